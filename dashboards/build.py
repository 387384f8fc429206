"""The Grafana dashboard for flux-oci-trigger, written as code.

Grafana's JSON is long and repetitive; reviewing a change to a query in it is hard. Here
each panel is a few lines, every PromQL expression can be listed (``expressions()``) and
checked against a real Prometheus, and ``flux-oci-trigger.json`` is the checked-in output:

    python -m dashboards.build          # rewrite dashboards/flux-oci-trigger.json
    python -m dashboards.build --check  # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("flux-oci-trigger.json")
UID = "flux-oci-trigger"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The label that tells clusters apart, as kubernetes-mixin's clusterLabel. Every selector
# carries cluster=~"$cluster"; its All value is .*, which also matches series without the
# label, so a single-cluster Prometheus needs no cluster label at all.
CLUSTER_LABEL = "cluster"
# Every selector: the cluster, the scrape job and the replica (dashboard-linter's
# target-job-rule and target-instance-rule).
JOB = f'{CLUSTER_LABEL}=~"$cluster", job=~"$job", instance=~"$instance"'
# Per-object series also carry the Flux object's namespace.
NS = f'{JOB}, namespace=~"$namespace"'
# What identifies a target across clusters: the join key of the per-target series.
TARGET = f"{CLUSTER_LABEL}, kind, namespace, name"
RATE = "$__rate_interval"
# The recording rule that puts Flux Operator's Ready condition next to the lag
# (alerts/flux-oci-trigger.rules.yaml).
FLUX_READY = "kind_namespace_name:flux_oci_target_lag_seconds:flux_ready"

# Values that make every expression concrete, e.g. for a PromQL syntax check.
SAMPLE_VARIABLES = {
    "$cluster": ".*",
    "$namespace": ".*",
    "$__rate_interval": "5m",
    "$job": "flux-oci-trigger",
    "$instance": ".+",
}

JSON = dict[str, Any]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # a table's current values, not a range


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # Grafana panel type: timeseries, stat, table, bargauge
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    unit: str = "short"
    description: str = ""
    options: JSON = field(default_factory=dict)
    transformations: tuple[JSON, ...] = ()
    overrides: tuple[JSON, ...] = ()
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _behind() -> str:
    return f"flux_oci_target_lag_seconds{{{NS}}} > 0"


def _quantiles(metric: str, by: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{JOB}}}[{RATE}])))",
            f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95)
    )


def _hide_and_rename(hide: tuple[str, ...], rename: dict[str, str], order: list[str]) -> JSON:
    return {
        "id": "organize",
        "options": {
            "excludeByName": dict.fromkeys(hide, True),
            "renameByName": rename,
            "indexByName": {name: i for i, name in enumerate(order)},
        },
    }


def _unit_override(column: str, unit: str) -> JSON:
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [{"id": "unit", "value": unit}],
    }


ROWS: tuple[Row, ...] = (
    Row(
        "Usage",
        (
            Panel(
                "OCI sources by kind",
                "stat",
                (Query(f"sum by (kind) (flux_oci_sources{{{NS}}})", "{{kind}}"),),
                width=8,
                description="OCIRepository and OCI HelmRepository objects in the cluster.",
            ),
            Panel(
                "Opted in",
                "bargauge",
                (
                    Query(
                        f"sum by (kind, opted_in) (flux_oci_sources{{{NS}}})",
                        "{{kind}} opted in: {{opted_in}}",
                    ),
                ),
                width=8,
                description="Sources with and without oci-trigger.gitlab.com annotations.",
            ),
            Panel(
                "Targets by state",
                "bargauge",
                (Query(f"sum by (state) (flux_oci_target_state{{{NS}}})", "{{state}}"),),
                width=8,
                description="OCIRepositories and HelmCharts checked, by current state.",
            ),
        ),
    ),
    Row(
        "Targets",
        (
            Panel(
                "Targets behind",
                "table",
                (
                    Query(
                        f"({_behind()}) * on ({TARGET}) group_left (applied_revision, "
                        f"latest_revision) flux_oci_target_info{{{NS}}}",
                        instant=True,
                    ),
                    Query(
                        f"flux_oci_target_versions_behind{{{NS}}} and on ({TARGET}) ({_behind()})",
                        instant=True,
                    ),
                    Query(
                        f"flux_oci_target_state{{{NS}}} == 1 and on ({TARGET}) ({_behind()})",
                        instant=True,
                    ),
                ),
                width=24,
                description="Targets with a newer artifact than the one Flux applied.",
                transformations=(
                    {"id": "merge", "options": {}},
                    _hide_and_rename(
                        ("Time", "Value #C", "job", "instance"),
                        {"Value #A": "lag", "Value #B": "versions behind"},
                        [
                            "kind",
                            "namespace",
                            "name",
                            "state",
                            "applied_revision",
                            "latest_revision",
                            "Value #A",
                            "Value #B",
                        ],
                    ),
                    {"id": "sortBy", "options": {"sort": [{"field": "lag", "desc": True}]}},
                ),
                overrides=(_unit_override("lag", "s"),),
            ),
            Panel(
                "All targets",
                "table",
                (
                    Query(
                        f"flux_oci_target_info{{{NS}}} * on ({TARGET}) group_left (state) "
                        f"(flux_oci_target_state{{{NS}}} == 1)",
                        instant=True,
                    ),
                ),
                width=24,
                description="Every checked target: its rule, what is applied, what is freshest.",
                transformations=(
                    _hide_and_rename(
                        ("Time", "Value", "__name__", "job", "instance"),
                        {},
                        [
                            "kind",
                            "namespace",
                            "name",
                            "state",
                            "url",
                            "rule",
                            "applied_revision",
                            "latest_revision",
                        ],
                    ),
                ),
            ),
            Panel(
                "Flux Ready next to the lag",
                "table",
                (Query(f"{FLUX_READY}{{{NS}}}", instant=True),),
                width=24,
                description="Each target's lag and state with the Ready condition, reason and "
                "suspension Flux Operator reports (flux_resource_info, joined by the recording "
                "rule); ready is empty where Flux Operator is not scraped.",
                transformations=(
                    _hide_and_rename(
                        ("Time", "__name__", "job", "instance"),
                        {"Value": "lag"},
                        [
                            "kind",
                            "namespace",
                            "name",
                            "state",
                            "ready",
                            "reason",
                            "suspended",
                            "Value",
                        ],
                    ),
                    {"id": "sortBy", "options": {"sort": [{"field": "lag", "desc": True}]}},
                ),
                overrides=(_unit_override("lag", "s"),),
            ),
            Panel(
                "Lag",
                "timeseries",
                (Query(_behind(), "{{kind}} {{namespace}}/{{name}}"),),
                unit="s",
                description="How long a newer artifact has waited to be applied.",
            ),
            Panel(
                "States over time",
                "timeseries",
                (Query(f"sum by (state) (flux_oci_target_state{{{NS}}})", "{{state}}"),),
                stacked=True,
                description="Targets in each state over time: a growing error, stuck or "
                "config_error band needs a look (README: When things fail).",
            ),
        ),
    ),
    Row(
        "Reconcile requests",
        (
            Panel(
                "Reconcile requests",
                "timeseries",
                (
                    Query(
                        f"sum by (kind) (rate(flux_oci_reconcile_requests_total{{{NS}}}[{RATE}]))",
                        "sent {{kind}}",
                    ),
                    Query(
                        "sum by (kind) "
                        f"(rate(flux_oci_reconcile_request_errors_total{{{NS}}}[{RATE}]))",
                        "failed {{kind}}",
                    ),
                ),
                width=8,
                unit="reqps",
                description="Reconcile requests (merge patches) sent to Flux objects, and those "
                "the API server refused.",
            ),
            Panel(
                "Request → applied",
                "timeseries",
                _quantiles("flux_oci_request_to_applied_seconds", "kind"),
                width=8,
                unit="s",
                description="From our reconcile request to Flux applying the artifact.",
            ),
            Panel(
                "Artifact → applied (lead time)",
                "timeseries",
                _quantiles("flux_oci_artifact_to_applied_seconds", "kind"),
                width=8,
                unit="s",
                description="From the artifact first seen in the registry to Flux applying it.",
            ),
        ),
    ),
    Row(
        "Registries",
        (
            Panel(
                "Requests by code",
                "timeseries",
                (
                    Query(
                        "sum by (registry, code) "
                        f"(rate(flux_oci_registry_requests_total{{{JOB}}}[{RATE}]))",
                        "{{registry}} {{code}}",
                    ),
                ),
                unit="reqps",
                stacked=True,
                description="Registry HTTP requests by answer code; error is a request that got "
                "no answer (timeout, connection refused).",
            ),
            Panel(
                "Error ratio",
                "timeseries",
                (
                    Query(
                        "sum by (registry) (rate(flux_oci_registry_requests_total"
                        f'{{{JOB}, code=~"5..|error"}}[{RATE}])) / sum by (registry) '
                        f"(rate(flux_oci_registry_requests_total{{{JOB}}}[{RATE}]))",
                        "{{registry}}",
                    ),
                ),
                unit="percentunit",
                description='5xx answers and requests without an answer ("error").',
            ),
            Panel(
                "Rate limited (429)",
                "timeseries",
                (
                    Query(
                        "sum by (registry) "
                        f"(rate(flux_oci_registry_rate_limited_total{{{JOB}}}[{RATE}]))",
                        "{{registry}}",
                    ),
                ),
                unit="reqps",
                description="HTTP 429 answers; the object waits for Retry-After (at most 10 "
                "minutes) before its next check.",
            ),
            Panel(
                "Request duration p95",
                "timeseries",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (registry, le) "
                        f"(rate(flux_oci_registry_request_duration_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "{{registry}}",
                    ),
                ),
                unit="s",
                description="95th percentile of one registry HTTP exchange, token requests "
                "included.",
            ),
            Panel(
                "Check errors by reason",
                "timeseries",
                (
                    Query(
                        f"sum by (reason) (rate(flux_oci_check_errors_total{{{JOB}}}[{RATE}]))",
                        "{{reason}}",
                    ),
                ),
                unit="ops",
                stacked=True,
                description="Failed target checks by reason (auth, not_found, rate_limited, "
                "unavailable, protocol, config, ...).",
            ),
            Panel(
                "Tag cache hit ratio",
                "timeseries",
                (
                    Query(
                        f"sum(rate(flux_oci_tag_cache_hits_total{{{JOB}}}[{RATE}])) / "
                        f"sum(rate(flux_oci_tag_cache_requests_total{{{JOB}}}[{RATE}]))",
                        "hit ratio",
                    ),
                ),
                unit="percentunit",
                description="Tag listings answered from the cache shared by every object.",
            ),
        ),
    ),
    Row(
        "Exporter",
        (
            Panel(
                "Last check age",
                "timeseries",
                (
                    Query(
                        f"time() - flux_oci_target_last_check_timestamp_seconds{{{NS}}}",
                        "{{kind}} {{namespace}}/{{name}}",
                    ),
                ),
                unit="s",
                description="Time since each target's last successful registry check.",
            ),
            Panel(
                "Up",
                "stat",
                (Query(f"up{{{JOB}}}", "{{instance}}"),),
                width=4,
                description="1 when Prometheus scrapes the exporter replica, 0 when it cannot.",
            ),
            Panel(
                "Version",
                "stat",
                (Query(f"count by (version) (flux_oci_build_info{{{JOB}}})", "{{version}}"),),
                width=4,
                options={"textMode": "name", "reduceOptions": {"calcs": ["lastNotNull"]}},
                description="Exporter versions running; two during a rolling update.",
            ),
            Panel(
                "Memory",
                "timeseries",
                (Query(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}"),),
                width=4,
                unit="bytes",
                description="Resident memory of each exporter replica.",
            ),
            Panel(
                "Kubernetes API: failed calls and relists",
                "timeseries",
                (
                    Query(
                        f"sum by (resource) (rate(flux_oci_kube_api_errors_total{{{JOB}}}"
                        f"[{RATE}]))",
                        "errors {{resource}}",
                    ),
                    Query(
                        f"sum by (resource) (increase(flux_oci_kube_lists_total{{{JOB}}}[{RATE}]))",
                        "lists {{resource}}",
                    ),
                ),
                description="Failed LIST/WATCH calls (retried with back-off) and LISTs; after "
                "start-up, a LIST means a watch expired (HTTP 410) and was relisted.",
            ),
            Panel(
                "Leader",
                "timeseries",
                (Query(f"flux_oci_leader{{{JOB}}}", "{{instance}}"),),
                description="1 on the replica that leads (it alone requests and exports the "
                "per-target series), 0 on a standby; a change is a failover.",
            ),
        ),
    ),
    Row(
        "Push events",
        (
            Panel(
                "Events received",
                "timeseries",
                (
                    Query(
                        "sum by (source, result) "
                        f"(rate(flux_oci_events_received_total{{{JOB}}}[{RATE}]))",
                        "{{source}} {{result}}",
                    ),
                ),
                unit="ops",
                stacked=True,
                description="Registry and forge events on the events listener: accepted (a "
                "tracked repository), ignored, coalesced (within the per-repository gap), "
                "unauthorized (wrong secret), invalid.",
            ),
            Panel(
                "Event to request",
                "timeseries",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(flux_oci_event_to_request_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "p99",
                    ),
                    Query(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(flux_oci_event_to_request_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "p50",
                    ),
                ),
                unit="s",
                description="From a push event received to the reconcile request it led to.",
            ),
            Panel(
                "Events to Flux's alerts",
                "timeseries",
                (
                    Query(
                        f"sum by (result) (rate(flux_oci_flux_events_total{{{JOB}}}[{RATE}]))",
                        "{{result}}",
                    ),
                ),
                unit="ops",
                stacked=True,
                description="Our Events posted to notification-controller (--events-addr): "
                "sent, duplicate (its 5-minute filter), failed after retries, dropped (queue "
                "full).",
            ),
        ),
    ),
)


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard, Grafana variables left in."""
    return [q.expr for row in ROWS for panel in row.panels for q in panel.queries]


def concrete(expr: str, variables: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana's variables replaced (``SAMPLE_VARIABLES`` by default)."""
    values = SAMPLE_VARIABLES if variables is None else variables
    result = expr
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $__rate
        result = result.replace(name, values[name])
    left = re.findall(r"\$\{?\w+", result)
    if left:
        raise ValueError(f"unsubstituted variables {left} in {expr!r}")
    return result


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> JSON:
    targets = []
    for i, q in enumerate(panel.queries):
        target: JSON = {
            "datasource": DATASOURCE,
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "refId": chr(ord("A") + i),
        }
        if q.instant:
            target |= {"instant": True, "range": False, "format": "table"}
        targets.append(target)
    defaults: JSON = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 20 if panel.stacked else 0,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "showPoints": "never",
        }
    built: JSON = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": list(panel.overrides)},
        "options": panel.options,
        "targets": targets,
    }
    if panel.description:
        built["description"] = panel.description
    if panel.transformations:
        built["transformations"] = list(panel.transformations)
    return built


def _layout() -> list[JSON]:
    panels: list[JSON] = []
    y = 0
    panel_id = 1
    for row in ROWS:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return panels


def _query_variable(name: str, metric: str, selector: str, all_value: str) -> JSON:
    """A multi-select variable read with label_values from one of the exporter's metrics."""
    query = (
        f"label_values({metric}{{{selector}}}, {name})"
        if selector
        else (f"label_values({metric}, {name})")
    )
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
    }


def _variables() -> list[JSON]:
    """Data source, then cluster, job, instance and namespace, each narrowed by the ones
    before it. job and instance match dashboard-linter's template rules (All is .+);
    cluster's and namespace's All is .*, which also matches a series without the label."""
    cluster = f'{CLUSTER_LABEL}=~"$cluster"'
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        _query_variable(CLUSTER_LABEL, "flux_oci_build_info", "", ".*"),
        _query_variable("job", "flux_oci_build_info", cluster, ".+"),
        _query_variable("instance", "flux_oci_build_info", f'{cluster}, job=~"$job"', ".+"),
        _query_variable("namespace", "flux_oci_sources", JOB, ".*"),
    ]


def dashboard() -> JSON:
    return {
        "uid": UID,
        "title": "Flux OCI trigger",
        "description": "Flux OCI sources: usage, lag behind the registries, reconcile requests.",
        "tags": ["flux", "oci", "flux-oci-trigger"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": _layout(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python -m dashboards.build", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
