"""Metrics exposition: names, labels, no stale series, and promtool's own lint.

``scrape`` is what /metrics serves (see ``tests/metrics/test_formats.py`` for the wire)."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.flux.targets import TargetId, TargetKind
from exporter.metrics.exposition import Exposition
from exporter.metrics.instruments import CHECK_ERROR_REASONS, Metrics
from exporter.model import Delivery, ErrorReason, EventResult, State
from exporter.registry.cache import CacheStats
from exporter.state import StateStore, TargetRow
from exporter.web.endpoints import Endpoints, Format

APP = TargetId(TargetKind.OCI_REPOSITORY, "team-a", "app")
CHART = TargetId(TargetKind.HELM_CHART, "team-b", "team-b-web")


def row(target: TargetId, state: State, **kw: object) -> TargetRow:
    base: dict[str, object] = {
        "id": target,
        "url": "oci://registry.example/app",
        "rule": "semver >=1.0.0",
        "applied_revision": "v1.0.0@sha256:" + "a" * 64,
        "latest_revision": "v1.1.0@sha256:" + "b" * 64,
        "state": state,
    }
    base.update(kw)
    return TargetRow(**base)  # type: ignore[arg-type]


@pytest.fixture
def setup() -> tuple[Metrics, StateStore]:
    store = StateStore()
    metrics = Metrics()
    metrics.attach(lambda: CacheStats(requests=10, hits=7, fetches=3))
    return metrics, store


def scrape(metrics: Metrics, store: StateStore, fmt: Format = Format.TEXT) -> bytes:
    """What /metrics serves: the rendered per-target families, then the live registry."""
    exposition = Exposition(store, 60)
    server = Endpoints(("127.0.0.1", 0), metrics.registry, exposition.body, ok, ok)
    try:
        return b"".join(server.metrics_body(fmt, gzipped=False))
    finally:
        server.stop()


def ok() -> tuple[bool, str]:
    return True, "ok"


def value(text: bytes, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and s.labels == (labels or {}):
                return float(s.value)
    return None


def test_target_series_follow_the_snapshot(setup: tuple[Metrics, StateStore]) -> None:
    metrics, store = setup
    store.put(row(APP, State.BEHIND, lag_seconds=42.5, versions_behind=2, last_check=1e9))
    store.put(row(CHART, State.UP_TO_DATE, last_check=1e9))
    store.count_request(APP, failed=False)
    store.set_sources(
        {("OCIRepository", "team-a", True): 1, ("HelmRepository", "team-b", False): 3}
    )
    text = scrape(metrics, store)

    def get(name: str, labels: dict[str, str] | None = None) -> float | None:
        return value(text, name, labels)

    ids = {"kind": "OCIRepository", "namespace": "team-a", "name": "app"}
    assert get("flux_oci_target_state", {**ids, "state": "behind"}) == 1
    assert get("flux_oci_target_state", {**ids, "state": "up_to_date"}) is None  # current only
    assert get("flux_oci_target_lag_seconds", ids) == 42.5
    assert get("flux_oci_target_versions_behind", ids) == 2
    assert get("flux_oci_reconcile_requests_total", ids) == 1
    # with the first request, at 0: a rate over the errors then sees the first failure
    assert get("flux_oci_reconcile_request_errors_total", ids) == 0
    chart = {"kind": "HelmChart", "namespace": "team-b", "name": "team-b-web"}
    assert get("flux_oci_target_versions_behind", chart) == 0
    assert get("flux_oci_reconcile_requests_total", chart) is None  # never requested
    assert get("flux_oci_reconcile_request_errors_total", chart) is None
    assert get("flux_oci_sources", {"kind": "HelmRepository", "namespace": "team-b", "shard": "",
                                    "opted_in": "false"}) == 3  # fmt: skip
    assert get("flux_oci_tag_cache_hits_total") == 7
    for reason in CHECK_ERROR_REASONS:
        assert get("flux_oci_check_errors_total", {"reason": reason}) == 0

    store.keep_only({CHART})
    after = scrape(metrics, store).decode()
    assert 'name="app"' not in after
    assert 'name="team-b-web"' in after


def test_a_render_reuses_unchanged_rows_and_serves_gzip() -> None:
    store = StateStore()
    exposition = Exposition(store, 60)
    store.put(row(APP, State.BEHIND, last_check=1e9))
    store.put(row(CHART, State.UP_TO_DATE, last_check=1e9))
    first = exposition.render()
    store.put(row(APP, State.PENDING, last_check=2e9))
    second = exposition.render()
    assert second.version > first.version
    for fmt in Format:
        text = second.text(fmt)
        assert b'state="pending"' in text and b'state="behind"' not in text
        assert b"2e+09" in text and b"1e+09" in text  # the chart's line is the one kept
        zipped = b"".join(exposition.body(fmt, gzipped=True))  # gzip members, one stream
        assert gzip.decompress(zipped) == b"".join(exposition.body(fmt)) == text


def test_label_values_are_escaped() -> None:
    store = StateStore()
    store.put(row(APP, State.ERROR, rule='semver >=1 filter ^v\\d+"x"\n'))
    text = Exposition(store, 60).render().text(Format.TEXT)
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    (info,) = families["flux_oci_target_info"].samples
    assert info.labels["rule"] == 'semver >=1 filter ^v\\d+"x"\n'


def test_verdicts_export_the_label_values_dashboards_and_alerts_name() -> None:
    """The enums are the label values of the contract: a renamed member would break it."""
    assert [s.value for s in State] == [
        "up_to_date", "behind", "pinned", "suspended", "pending", "stuck", "no_match", "error",
        "config_error", "unsupported",
    ]  # fmt: skip
    assert CHECK_ERROR_REASONS == (
        "auth", "not_found", "rate_limited", "unavailable", "protocol", "config", "unsupported",
        "kubernetes", "internal",
    )  # fmt: skip
    assert [r.value for r in EventResult] == [
        "accepted", "ignored", "coalesced", "unauthorized", "invalid",
    ]  # fmt: skip
    metrics = Metrics()
    metrics.events_enabled(["distribution"])
    metrics.check_failed(ErrorReason.AUTH)
    metrics.event_received("distribution", EventResult.COALESCED)
    get = metrics.registry.get_sample_value
    assert get("flux_oci_check_errors_total", {"reason": "auth"}) == 1
    results = {"source": "distribution", "result": "coalesced"}
    assert get("flux_oci_events_received_total", results) == 1


def test_flux_events_are_counted_by_result_from_zero_only_when_on() -> None:
    assert [d.value for d in Delivery] == ["sent", "duplicate", "failed", "dropped"]
    metrics = Metrics()
    get = metrics.registry.get_sample_value
    assert get("flux_oci_flux_events_total", {"result": "failed"}) is None  # off: no series
    metrics.flux_events_enabled()
    assert all(get("flux_oci_flux_events_total", {"result": d}) == 0 for d in Delivery)
    metrics.flux_event(Delivery.SENT)
    assert get("flux_oci_flux_events_total", {"result": "sent"}) == 1


def test_registry_observer_counts(setup: tuple[Metrics, StateStore]) -> None:
    metrics, _ = setup
    metrics.request("registry.example:5000", "200", 0.02)
    metrics.request("registry.example:5000", "429", 0.01)
    metrics.rate_limited("registry.example:5000")
    get = metrics.registry.get_sample_value
    assert get("flux_oci_registry_requests_total",
               {"registry": "registry.example:5000", "code": "429"}) == 1  # fmt: skip
    assert get("flux_oci_registry_request_duration_seconds_count",
               {"registry": "registry.example:5000"}) == 2  # fmt: skip
    assert get("flux_oci_registry_rate_limited_total", {"registry": "registry.example:5000"}) == 1


@pytest.mark.prometheus
def test_promtool_check_metrics_is_clean(setup: tuple[Metrics, StateStore]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed (scripts/install-packages installs it)")
    metrics, store = setup
    store.put(row(APP, State.BEHIND, lag_seconds=1.0, last_check=1e9))
    metrics.request_to_applied.labels("OCIRepository").observe(3.2)
    metrics.request("registry.example", "200", 0.1)
    exposition = scrape(metrics, store)
    done = subprocess.run([promtool, "check", "metrics"], input=exposition,
                          capture_output=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert done.stdout.decode().strip() == "" and done.stderr.decode().strip() == ""
