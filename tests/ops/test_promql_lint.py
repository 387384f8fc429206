"""tools/promql-lint on the shipped dashboard and rules, fed with what a real exporter exposes.

The linter carries dashboard-linter's and pint's checks on Prometheus's own PromQL parser
(scripts/build-tools promql-lint). Its promql/series check gets the metric names scraped
from a real exporter process, watching a real API server and polling a real loopback
registry after it has requested a reconcile and seen it applied. The deliberate exceptions
are in dashboards/ and alerts/promql-lint-exceptions.yaml, each with its reason.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from devenv.exporter import exporter_process
from devenv.kubeapi import ControlPlane
from devenv.ports import free_port
from devenv.push import Pusher
from devenv.registry import RunningRegistry
from devenv.tools import tool_dir
from tests.fixtures.objects import GROUP, VERSION, namespace, oci_repository
from tests.ops.conftest import ROOT, require_tool
from tests.ops.exposition import series_names

DASHBOARD = ROOT / "dashboards" / "flux-oci-trigger.json"
RULES = ROOT / "alerts" / "flux-oci-trigger.rules.yaml"
PROMETHEUS_RULE = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
EXCEPTIONS = (
    ROOT / "dashboards" / "promql-lint-exceptions.yaml",
    ROOT / "alerts" / "promql-lint-exceptions.yaml",
)
FLUX_READY = "record kind_namespace_name:flux_oci_target_lag_seconds:flux_ready"
# What the exceptions files excuse, and nothing else: Flux Operator's metric, in both packagings.
EXCUSED = {
    (str(RULES), "promql/series", FLUX_READY, "flux_resource_info"),
    (str(PROMETHEUS_RULE), "promql/series", FLUX_READY, "flux_resource_info"),
}

Findings = list[dict[str, str]]
# The README's metric list (tests/ops/exposition.py) and the process collector's memory gauge.
CONTRACT = series_names() | {"process_resident_memory_bytes"}


@pytest.fixture(scope="session")
def promql_lint() -> str:
    return require_tool("promql-lint", str(tool_dir("promql-lint") / "promql-lint"))


def lint(
    binary: str,
    tmp_path: Path,
    names: set[str] | None,
    *,
    dashboard: Path = DASHBOARD,
    rules: tuple[Path, ...] = (RULES, PROMETHEUS_RULE),
    exceptions: tuple[Path, ...] = EXCEPTIONS,
) -> tuple[int, Findings]:
    args = [binary, "-json", "-metric-prefix", "flux_oci_", "-dashboard", str(dashboard)]
    for path in rules:
        args += ["-rules", str(path)]
    for path in exceptions:
        args += ["-exceptions", str(path)]
    if names is not None:
        series = tmp_path / "series.txt"
        series.write_text("".join(f"{n}\n" for n in sorted(names)))
        args += ["-series", str(series)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines()]


def _excused(findings: Findings) -> set[tuple[str, str, str, str]]:
    return {(f["file"], f["rule"], f["where"], f["what"]) for f in findings if f.get("excused")}


def _errors(findings: Findings) -> Findings:
    return [f for f in findings if not f.get("excused")]


# --- the shipped files ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def exposed(
    control_plane: ControlPlane, registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> set[str]:
    """Sample names on /metrics of a real exporter that has polled the loopback registry,
    requested a reconcile, seen Flux apply it, with the events listener on."""
    with Pusher(registry.base_url) as push:
        old = push.flux_artifact("lint/web", "v1.0.0", created=1_700_000_000)
        new = push.flux_artifact("lint/web", "v1.1.0", created=1_700_000_100)
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    work = tmp_path_factory.mktemp("promql-lint-exporter")
    secret = work / "distribution-secret"
    secret.write_text("lint-secret\n")
    try:
        ns = namespace(api, "promql-lint")
        oci_repository(
            api, ns, "web", f"oci://{registry.host}/lint/web", {"semver": ">=1.0.0"},
            {"oci-trigger.gitlab.com/enabled": "true"}, applied=f"v1.0.0@{old.digest}",
        )  # fmt: skip
        env = {"FLUX_OCI_TRIGGER_DISTRIBUTION_SECRET_FILE": str(secret)}
        events = f"127.0.0.1:{free_port()}"
        flux = f"http://127.0.0.1:{free_port()}/"  # nothing listens: counted, as failed
        with exporter_process(
            control_plane.kubeconfig, work / "exporter.log", "--namespace", ns,
            "--events-listen", events, "--events-addr", flux, min_interval="1s", env=env,
        ) as proc:  # fmt: skip
            _wait(lambda: "flux_oci_reconcile_requests_total" in _names(proc.url), "a request")
            _set_applied(api, ns, "web", f"v1.1.0@{new.digest}")
            _wait(lambda: "flux_oci_request_to_applied_seconds_count" in _names(proc.url),
                  "the applied revision to be seen")  # fmt: skip
            return _names(proc.url)
    finally:
        api.close()


def _names(base: str) -> set[str]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _set_applied(api: client.ApiClient, ns: str, name: str, revision: str) -> None:
    """Where source-controller records the artifact it pulled."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "ocirepositories", name,
        {"status": {"artifact": {"revision": revision, "digest": "sha256:" + "1" * 64,
                                 "path": "x", "url": "http://x",
                                 "lastUpdateTime": "2026-01-02T00:00:00Z"}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip


@pytest.mark.cluster
def test_shipped_dashboard_and_rules_pass_against_a_real_exporter(
    promql_lint: str, exposed: set[str], tmp_path: Path
) -> None:
    assert {"flux_oci_target_lag_seconds", "flux_oci_registry_requests_total"} <= exposed
    code, findings = lint(promql_lint, tmp_path, exposed)
    assert _errors(findings) == [], "\n".join(json.dumps(f) for f in _errors(findings))
    assert code == 0
    assert _excused(findings) == EXCUSED


@pytest.mark.cluster
def test_series_check_reports_what_the_exporter_does_not_expose(
    promql_lint: str, exposed: set[str], tmp_path: Path
) -> None:
    """The same run fails as soon as one queried metric is missing from the exposition."""
    missing = "flux_oci_registry_rate_limited_total"
    code, findings = lint(promql_lint, tmp_path, exposed - {missing})
    assert code == 1
    _, baseline = lint(promql_lint, tmp_path, exposed)
    unknown = {(f["rule"], f["what"]) for f in _errors(findings)}
    assert unknown - {(f["rule"], f["what"]) for f in _errors(baseline)} == {
        ("promql/series", missing)
    }


def test_shipped_files_pass_against_the_documented_contract(
    promql_lint: str, tmp_path: Path
) -> None:
    """Without a cluster: the README's metric list (tests/ops/exposition.py) instead."""
    code, findings = lint(promql_lint, tmp_path, CONTRACT)
    assert _errors(findings) == [], _errors(findings)
    assert code == 0


# --- every check can fail -------------------------------------------------------------------


def _dashboard_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    change(board)
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(board))
    return path


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in board["panels"] if p["title"] == title)
    return found


def _variable(board: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in board["templating"]["list"] if v["name"] == name)
    return found


def _set_expr(title: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(board: dict[str, Any]) -> None:
        target = _panel(board, title)["targets"][0]
        assert old in target["expr"], target["expr"]
        target["expr"] = target["expr"].replace(old, new)

    return change


def _both(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(board: dict[str, Any]) -> None:
        for one in changes:
            one(board)

    return change


DASHBOARD_BREAKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "uneditable-dashboard-rule": lambda b: b.update(editable=True),
    "panel-title-description-rule": lambda b: _panel(b, "Up").pop("description"),
    "panel-datasource-rule": lambda b: _panel(b, "Memory").update(datasource="Prometheus"),
    "template-datasource-rule": lambda b: _variable(b, "datasource").update(name="ds"),
    "template-job-rule": lambda b: _variable(b, "job").update(multi=False),
    "template-instance-rule": lambda b: _variable(b, "instance").update(allValue=".*"),
    "template-label-promql-rule": lambda b: _variable(b, "namespace")["query"].update(
        query="label_values(flux_oci_sources{, namespace)"
    ),
    "template-metric-rule": lambda b: _variable(b, "job")["query"].update(
        query='label_values(up{cluster=~"$cluster"}, job)'
    ),
    "target-promql-rule": _set_expr("Memory", "process_resident_memory_bytes{", "rate({"),
    "target-job-rule": _set_expr("Memory", 'job=~"$job"', 'job="flux-oci-trigger"'),
    "target-instance-rule": _set_expr("Memory", ', instance=~"$instance"', ""),
    "target-cluster-rule": _set_expr("Memory", 'cluster=~"$cluster", ', ""),
    "target-rate-interval-rule": _set_expr("Rate limited (429)", "[$__rate_interval]", "[5m]"),
    "target-counter-agg-rule": _both(
        _set_expr("Rate limited (429)", "rate(", "("),
        _set_expr("Rate limited (429)", "[$__rate_interval]", ""),
    ),
}


@pytest.mark.parametrize("rule", sorted(DASHBOARD_BREAKS))
def test_dashboard_rule_fails_on_a_broken_copy(promql_lint: str, tmp_path: Path, rule: str) -> None:
    broken = _dashboard_with(tmp_path, DASHBOARD_BREAKS[rule])
    code, findings = lint(promql_lint, tmp_path, CONTRACT, dashboard=broken)
    assert code == 1
    assert rule in {f["rule"] for f in _errors(findings)}, _errors(findings)


def _rules_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = yaml.safe_load(RULES.read_text())
    change(
        next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "FluxOCIConfigError")
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


RULE_BREAKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "promql/syntax": lambda r: r.update(expr="flux_oci_target_state{state=config_error} == 1"),
    "alerts/annotation": lambda r: r["annotations"].update(
        runbook=r["annotations"].pop("runbook_url")
    ),
    "promql/series": lambda r: r.update(expr='flux_oci_target_status{state="config_error"} == 1'),
}


@pytest.mark.parametrize("rule", sorted(RULE_BREAKS))
def test_rule_check_fails_on_a_broken_copy(promql_lint: str, tmp_path: Path, rule: str) -> None:
    broken = _rules_with(tmp_path, RULE_BREAKS[rule])
    code, findings = lint(promql_lint, tmp_path, CONTRACT, rules=(broken,))
    assert code == 1
    errors = {(f["rule"], f["where"]) for f in _errors(findings)}
    assert (rule, "alert FluxOCIConfigError") in errors, errors


def test_an_exception_that_excuses_nothing_fails(promql_lint: str, tmp_path: Path) -> None:
    stale = tmp_path / "exceptions.yaml"
    stale.write_text(
        yaml.safe_dump([{"rule": "promql/series", "where": "alert Gone", "why": "removed"}])
    )
    code, findings = lint(promql_lint, tmp_path, CONTRACT, exceptions=(*EXCEPTIONS, stale))
    assert code == 1
    assert [f["rule"] for f in _errors(findings)] == ["lint/unused-exception"]


def test_exceptions_are_written_down_with_a_reason() -> None:
    for path in EXCEPTIONS:
        for entry in yaml.safe_load(path.read_text()) or []:
            assert {"rule", "where", "why"} <= set(entry), (path, entry)
            assert len(entry["why"].split()) >= 8, (path, entry)
