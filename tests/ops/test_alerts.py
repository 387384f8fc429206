"""Alerting and recording rules: valid, unit-tested with promtool, same in both packagings,
every alert explained by a runbook in the README."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import ROOT, PrometheusAPI
from tests.ops.exposition import series_names

RULES = ROOT / "alerts" / "flux-oci-trigger.rules.yaml"
RULE_TESTS = ROOT / "alerts" / "flux-oci-trigger.rules.test.yaml"
PROMETHEUS_RULE = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
README = ROOT / "README.md"
RUNBOOKS = "https://gitlab.com/flux-oci-trigger/flux-oci-trigger/-/blob/main/README.md#"
FLUX_READY = "kind_namespace_name:flux_oci_target_lag_seconds:flux_ready"
EXPECTED_RECORDS = {FLUX_READY}
EXPECTED_ALERTS = {
    "FluxOCITargetBehindTooLong",
    "FluxOCIReconcileStuck",
    "FluxOCIConfigError",
    "FluxOCIRegistryErrors",
    "FluxOCIRegistryRateLimited",
    "FluxOCIKubeAPIErrors",
    "FluxOCIEventsUnauthorized",
    "FluxOCICheckStale",
    "FluxOCITriggerDown",
}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.prometheus
def test_promtool_check_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "rules", str(RULES), cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS) + len(EXPECTED_RECORDS)} rules found" in out.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests(promtool: str) -> None:
    out = _promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.prometheus
def test_unit_tests_fail_when_a_threshold_changes(promtool: str, tmp_path: Path) -> None:
    """The promtool tests can fail: a looser lag threshold fires too early."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    lag = "flux_oci_target_lag_seconds > "
    loosened = RULES.read_text().replace(lag + "1800", lag + "60")
    assert loosened != RULES.read_text()
    (tmp_path / RULES.name).write_text(loosened)
    out = _promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert out.returncode != 0
    assert "FluxOCITargetBehindTooLong" in out.stdout + out.stderr


@pytest.mark.prometheus
def test_flux_ready_join_test_fails_when_the_join_loses_a_label(
    promtool: str, tmp_path: Path
) -> None:
    """The recording rule's promtool test can fail: without cluster in the aggregation the
    two clusters' apps/podinfo collide; without suspended, the label is missing."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    for broken, expected in (
        (("max by (cluster, kind,", "max by (kind,"), "many-to-many"),
        (("group_left (ready, reason, suspended)", "group_left (ready, reason)"), FLUX_READY),
    ):
        text = RULES.read_text().replace(*broken)
        assert text != RULES.read_text()
        (tmp_path / RULES.name).write_text(text)
        out = _promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
        assert out.returncode != 0, broken
        assert expected in out.stdout + out.stderr, out.stdout


def test_every_alert_has_a_unit_test_that_fires_and_one_that_does_not() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    recorded: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
        for check in case.get("promql_expr_test", []):
            if check.get("exp_samples"):
                recorded.add(check["expr"])
    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS
    assert recorded == EXPECTED_RECORDS


def test_flux_ready_join_is_tested_with_flux_operator_series() -> None:
    """The input is shaped as a PodMonitor scrapes Flux Operator: namespace is the pod's,
    the object's namespace is exported_namespace, with Flux Operator's label set."""
    flux_operator_labels = {"uid", "kind", "name", "exported_namespace", "ready", "reason"}
    flux_operator_labels |= {"suspended", "revision", "url", "ref", "source_name", "path"}
    case = next(
        c
        for c in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        if any(t["expr"] == FLUX_READY for t in c.get("promql_expr_test", []))
    )
    inputs = [s["series"] for s in case["input_series"] if s["series"].startswith("flux_resource")]
    assert inputs
    for series in inputs:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', series))
        assert flux_operator_labels <= set(labels), sorted(flux_operator_labels - set(labels))
        assert labels["namespace"] == "flux-system"  # the operator's pod, not the object


def _slug(heading: str) -> str:
    """The anchor GitLab and GitHub give a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    """Anchors of the headings inside the README's Runbooks section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Runbooks\n", 1)[1].split("\n## ", 1)[0]
    return {_slug(h) for h in re.findall(r"^###+ (.+)$", section, flags=re.MULTILINE)}


def test_alerts_are_labelled_and_explained() -> None:
    rules = [r for r in _rules() if "alert" in r]
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    assert {r["record"] for r in _rules() if "record" in r} == EXPECTED_RECORDS
    anchors = _runbook_anchors()
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
        assert "runbook" not in annotations, rule["alert"]
        assert annotations["runbook_url"] == RUNBOOKS + rule["alert"].lower(), rule["alert"]
        assert rule["alert"].lower() in anchors, f"README has no runbook for {rule['alert']}"
        assert "for" in rule, rule["alert"]
        if "flux_oci_target_" in rule["expr"]:  # one alert per Flux object: say which
            for key in ("summary", "description"):
                text = rule["annotations"][key]
                assert "$labels.namespace" in text and "$labels.name" in text, rule["alert"]


def test_alerts_use_only_contract_metrics() -> None:
    names = {m for r in _rules() for m in re.findall(r"\b(flux_oci_\w+)", r["expr"])}
    assert names and names <= series_names(), sorted(names - series_names())


def test_prometheus_rule_embeds_the_plain_rules_file() -> None:
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load(RULES.read_text()), (
        f"{PROMETHEUS_RULE.relative_to(ROOT)} spec differs from {RULES.relative_to(ROOT)}"
    )


@pytest.mark.prometheus
def test_rules_evaluate_on_live_data(prometheus: PrometheusAPI) -> None:
    """Loaded by a real Prometheus over the sample scrape: healthy, and the expected ones pend."""
    deadline = time.monotonic() + 30
    while True:
        rules = [
            rule
            for group in prometheus.get("/api/v1/rules")["data"]["groups"]
            for rule in group["rules"]
        ]
        pending = {
            (a["labels"]["alertname"], a["labels"].get("name") or a["labels"].get("registry"))
            for a in prometheus.get("/api/v1/alerts")["data"]["alerts"]
        }
        evaluated = rules and all(r["lastEvaluation"] > "2000" for r in rules)
        if (evaluated and pending) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {r["name"] for r in rules} == EXPECTED_ALERTS | EXPECTED_RECORDS
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
    assert ("FluxOCIReconcileStuck", "web") in pending  # state stuck in the sample
    assert ("FluxOCIRegistryErrors", "ghcr.io") in pending  # one 503 in three answers
    assert ("FluxOCIRegistryRateLimited", "ghcr.io") in pending
    assert ("FluxOCIKubeAPIErrors", None) in pending  # the sample's API errors keep growing
    assert ("FluxOCITargetBehindTooLong", "web") in pending  # 40m behind
    assert ("FluxOCITargetBehindTooLong", "podinfo") not in pending  # 21m only
