"""The exporter exports exactly the metric families the dashboard and alerts rely on, in
both formats /metrics speaks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics.exposition import Exposition
from exporter.metrics.instruments import Metrics
from exporter.registry.cache import CacheStats
from exporter.state import StateStore
from exporter.web.endpoints import Endpoints, Format
from tests.ops.exposition import CONTRACT

PARSERS: dict[Format, Callable[[str], Iterable[Metric]]] = {
    Format.TEXT: text_string_to_metric_families,
    Format.OPENMETRICS: openmetrics_families,
}


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_exporter_families_match_the_contract(fmt: Format) -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.attach(lambda: CacheStats(requests=0, hits=0, fetches=0))
    exposition = Exposition(StateStore(), 60.0)
    server = Endpoints(
        ("127.0.0.1", 0), metrics.registry, exposition.body, lambda: (True, ""), lambda: (True, "")
    )
    try:
        text = b"".join(server.metrics_body(fmt, gzipped=False)).decode()
    finally:
        server.stop()
    exported = {
        family.name: family.type
        for family in PARSERS[fmt](text)
        if family.name.startswith("flux_oci_")
    }
    promised = {name.removesuffix("_total"): kind for name, (kind, _) in CONTRACT.items()}
    assert exported == promised
