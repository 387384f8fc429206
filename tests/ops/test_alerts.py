"""Alerting rules: valid, unit-tested with promtool, same in both packagings."""

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
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in out.stdout


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


def test_every_alert_has_a_unit_test_that_fires_and_one_that_does_not() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_alerts_are_labelled_and_explained() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
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
    assert {r["name"] for r in rules} == EXPECTED_ALERTS
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []
    assert ("FluxOCIReconcileStuck", "web") in pending  # state stuck in the sample
    assert ("FluxOCIRegistryErrors", "ghcr.io") in pending  # one 503 in three answers
    assert ("FluxOCIRegistryRateLimited", "ghcr.io") in pending
    assert ("FluxOCIKubeAPIErrors", None) in pending  # the sample's API errors keep growing
    assert ("FluxOCITargetBehindTooLong", "web") in pending  # 40m behind
    assert ("FluxOCITargetBehindTooLong", "podinfo") not in pending  # 21m only
