"""The Grafana dashboard: generated JSON up to date, well formed, every query valid PromQL."""

from __future__ import annotations

import json
import re

import pytest

from dashboards import build
from tests.ops.conftest import PrometheusAPI
from tests.ops.exposition import series_names

METRIC = re.compile(r"\b(flux_oci_\w+)")


def test_checked_in_json_is_the_generators_output() -> None:
    assert build.OUTPUT.read_text(encoding="utf-8") == build.render(), (
        "dashboards/flux-oci-trigger.json is stale: run python -m dashboards.build"
    )
    assert build.main(["--check"]) == 0


def test_dashboard_structure() -> None:
    board = json.loads(build.OUTPUT.read_text(encoding="utf-8"))
    assert board["uid"] == "flux-oci-trigger"
    assert 36 <= board["schemaVersion"] <= 41
    assert board["editable"] is False
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "cluster", "job", "instance", "namespace"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("cluster", "job", "instance", "namespace"):
        variable = variables[name]
        assert variable["multi"] and variable["includeAll"], name
        assert variable["definition"].startswith("label_values(flux_oci_"), name
        assert variable["definition"].endswith(f", {name})"), name
    # All must also match series without a cluster label (single-cluster Prometheus)
    assert variables["cluster"]["allValue"] == ".*"
    assert variables["job"]["allValue"] == variables["instance"]["allValue"] == ".+"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs == build.expressions()


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in build.dashboard()["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_covers_the_brief() -> None:
    """The overview, lag table, requests, latencies, registries, cache and check age."""
    used = {m for e in build.expressions() for m in METRIC.findall(e)}
    wanted = series_names() - {name for name in series_names() if name.endswith(("_sum", "_count"))}
    wanted -= {
        "flux_oci_request_to_applied_seconds",
        "flux_oci_artifact_to_applied_seconds",
        "flux_oci_registry_request_duration_seconds",
        "flux_oci_event_to_request_seconds",
    }
    assert wanted <= used, sorted(wanted - used)
    table = next(
        e for e in build.expressions() if "group_left (applied_revision, latest_revision)" in e
    )
    assert "flux_oci_target_lag_seconds" in table and "flux_oci_target_info" in table


def test_expressions_use_only_contract_metrics() -> None:
    unknown = {m for e in build.expressions() for m in METRIC.findall(e)} - series_names()
    assert not unknown


def test_concrete_replaces_every_variable() -> None:
    for expr in build.expressions():
        assert "$" not in build.concrete(expr)
    with pytest.raises(ValueError, match="unsubstituted"):
        build.concrete('up{job="$region"}')


@pytest.mark.prometheus
@pytest.mark.parametrize("expr", build.expressions())
def test_expression_is_valid_and_returns_data(prometheus: PrometheusAPI, expr: str) -> None:
    status, body = prometheus.query(build.concrete(expr))
    assert status == 200 and body["status"] == "success", body
    assert body["data"]["result"], f"no data for {expr!r}"


def _variable_selectors() -> list[str]:
    return [
        v["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
        for v in build.dashboard()["templating"]["list"]
        if v["type"] == "query"
    ]


@pytest.mark.prometheus
@pytest.mark.parametrize("selector", _variable_selectors())
def test_variable_selector_returns_data(prometheus: PrometheusAPI, selector: str) -> None:
    """Each variable lists values from the exporter's series, whatever the ones before it."""
    status, body = prometheus.query(build.concrete(selector))
    assert status == 200 and body["data"]["result"], (selector, body)


@pytest.mark.prometheus
def test_all_clusters_match_series_without_a_cluster_label(prometheus: PrometheusAPI) -> None:
    """The sample scrape has no cluster label: All (.*) must match, a named cluster must not."""
    expr = next(e for e in build.expressions() if e.startswith("up{"))
    _, body = prometheus.query(build.concrete(expr))
    assert body["data"]["result"]
    _, body = prometheus.query(build.concrete(expr, build.SAMPLE_VARIABLES | {"$cluster": "east"}))
    assert body["data"]["result"] == []


@pytest.mark.prometheus
def test_flux_ready_panel_reads_the_recording_rule(prometheus: PrometheusAPI) -> None:
    """Without Flux Operator's series the recorded join keeps each target's lag and state."""
    expr = next(e for e in build.expressions() if e.startswith(build.FLUX_READY))
    _, body = prometheus.query(build.concrete(expr))
    rows = {r["metric"]["name"]: r for r in body["data"]["result"]}
    assert set(rows) == {"podinfo", "apps-podinfo", "web"}
    assert rows["web"]["metric"]["state"] == "stuck"
    assert float(rows["web"]["value"][1]) == 2400
    assert "ready" not in rows["web"]["metric"]


@pytest.mark.prometheus
def test_prometheus_rejects_a_broken_expression(prometheus: PrometheusAPI) -> None:
    """The check above can fail: a syntax error is a 400 bad_data."""
    status, body = prometheus.query("sum by (kind (flux_oci_sources)")
    assert status == 400 and body["errorType"] == "bad_data"


@pytest.mark.prometheus
def test_lag_table_joins_revisions(prometheus: PrometheusAPI) -> None:
    table = next(e for e in build.expressions() if "group_left (applied_revision" in e)
    _, body = prometheus.query(build.concrete(table))
    rows = {(r["metric"]["namespace"], r["metric"]["name"]): r for r in body["data"]["result"]}
    assert set(rows) == {("apps", "podinfo"), ("team-a", "web")}  # up-to-date one left out
    podinfo = rows[("apps", "podinfo")]
    assert podinfo["metric"]["applied_revision"].startswith("6.5.0@sha256:")
    assert podinfo["metric"]["latest_revision"].startswith("6.5.2@sha256:")
    assert float(podinfo["value"][1]) == 1260
