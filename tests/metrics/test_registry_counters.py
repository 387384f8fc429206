"""A registry's failure counters exist from 0 once it is first contacted, so that rate() and
the alerts on ``code="error"`` and on rate limiting see the very first failure.

Real registries on loopback (Debian's docker-registry; a fault registry for 429s and a
port nothing listens on), the real client and the real ``Metrics``; the series are read
from /metrics as served, in both formats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from devenv.ports import free_port
from devenv.push import Pusher
from devenv.registry import RunningRegistry
from exporter.metrics.exposition import Exposition
from exporter.metrics.instruments import Metrics
from exporter.model import ANONYMOUS, RepositoryRef, TLSOptions
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryNotFound, RegistryRateLimited, RegistryUnavailable
from exporter.state import StateStore
from exporter.web.endpoints import Endpoints, Format
from tests.fixtures.faultregistry import FaultRegistry, rate_limited

PLAIN_HTTP = TLSOptions(insecure=True)
PARSERS: dict[Format, Callable[[str], Iterable[Metric]]] = {
    Format.TEXT: text_string_to_metric_families,
    Format.OPENMETRICS: openmetrics_families,
}
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def served(metrics: Metrics, fmt: Format) -> Series:
    """Every flux_oci_registry_* sample /metrics serves, parsed back."""
    server = Endpoints(
        ("127.0.0.1", 0),
        metrics.registry,
        Exposition(StateStore(), 60).body,
        lambda: (True, ""),
        lambda: (True, ""),
    )
    try:
        text = b"".join(server.metrics_body(fmt, gzipped=False)).decode()
    finally:
        server.stop()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in PARSERS[fmt](text)
        for s in family.samples
        if s.name.startswith(("flux_oci_registry_requests", "flux_oci_registry_rate_limited"))
    }


def requests(host: str, code: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return "flux_oci_registry_requests_total", (("code", code), ("registry", host))


def limited(host: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return "flux_oci_registry_rate_limited_total", (("registry", host),)


class FirstLook(Metrics):
    """The real metrics, noting what /metrics served when the client announced a registry."""

    def __init__(self) -> None:
        super().__init__()
        self.at_contact: dict[str, Series] = {}

    def registry_contacted(self, registry: str) -> None:
        super().registry_contacted(registry)
        self.at_contact[registry] = served(self, Format.TEXT)


@pytest.mark.registry
def test_counters_start_at_zero_on_a_real_registry(registry: RunningRegistry) -> None:
    with Pusher(registry.base_url) as pusher:
        pusher.flux_artifact("team/app", "1.0.0")
    metrics = FirstLook()
    host = registry.host
    for fmt in Format:
        assert not [key for key in served(metrics, fmt) if (("registry", host)) in key[1]]
    with RegistryClient(observer=metrics, retries=0) as client:
        tags = client.list_tags(
            RepositoryRef.parse(f"oci://{host}/team/app"), ANONYMOUS, PLAIN_HTTP
        )
        assert tags == ["1.0.0"]
        with pytest.raises(RegistryNotFound):
            client.list_tags(RepositoryRef.parse(f"oci://{host}/team/gone"), ANONYMOUS, PLAIN_HTTP)
    at_contact = metrics.at_contact[host]
    assert at_contact[requests(host, "error")] == 0 and at_contact[limited(host)] == 0
    assert requests(host, "200") not in at_contact  # announced before the first answer
    for fmt in Format:
        series = served(metrics, fmt)
        assert series[requests(host, "error")] == 0
        assert series[requests(host, "429")] == 0
        assert series[limited(host)] == 0
        assert series[requests(host, "200")] >= 1 and series[requests(host, "404")] == 1


def test_a_first_answer_that_fails_is_counted_from_zero() -> None:
    metrics = FirstLook()
    with FaultRegistry() as limiting:
        limiting.route("/v2/team/app/tags/list", rate_limited("1"))
        with RegistryClient(observer=metrics, retries=0) as client:
            repo = RepositoryRef.parse(f"oci://{limiting.host}/team/app")
            with pytest.raises(RegistryRateLimited):
                client.list_tags(repo, ANONYMOUS, PLAIN_HTTP)
            nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
            with pytest.raises(RegistryUnavailable):
                client.list_tags(RepositoryRef.parse(f"oci://{nobody}/x"), ANONYMOUS, PLAIN_HTTP)
    for host, failed in ((limiting.host, requests(limiting.host, "429")), (nobody, None)):
        before = metrics.at_contact[host]
        assert before[requests(host, "error")] == before[limited(host)] == 0
        after = served(metrics, Format.OPENMETRICS)
        if failed is not None:
            assert before[failed] == 0 and after[failed] == 1 and after[limited(host)] == 1
        else:
            assert after[requests(host, "error")] == 1 and after[limited(host)] == 0
