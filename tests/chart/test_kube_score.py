"""kube-score on the kustomize layouts and on the rendered chart.

kube-score replaces kube-linter here (golang.stackrox.io/kube-linter is not served by the
reachable Go proxy). Every default check runs, plus the optional ones in OPTIONAL, for the
Kubernetes version the tests run against; the deliberate exceptions are in IGNORED, each
with its reason, and a test makes sure each one is still needed.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from devenv.tools import versions
from tests.chart.render import LAYOUTS, Objects, documents, template
from tests.chart.test_chart import CARRIED, VALUE_SETS
from tests.ops.conftest import ROOT, kustomize

KUBERNETES = ".".join(versions()["KUBERNETES_VERSION"].split(".")[:2])  # v1.35
OPTIONAL = ("container-seccomp-profile", "container-ports-check")
IGNORED = {
    # The pod listens only on its metrics port (Prometheus) and, with events on, its events
    # port (the ingress controller), whose clients live in namespaces that differ from one
    # cluster to the next; it must reach the API server and every registry the Flux objects
    # name. A NetworkPolicy valid everywhere would allow all of that and protect nothing:
    # the layouts have none, and the chart's (networkPolicy.enabled) admits only those ports,
    # from the peers you name, and restricts egress only when given rules.
    # test_the_chart_network_policy_passes runs this check on it.
    "pod-networkpolicy": "no portable NetworkPolicy",
    # The tag is a release version (or the image is pinned by digest): IfNotPresent starts
    # the same image without a registry round trip at every restart, so a registry outage
    # cannot keep the exporter from restarting. The image is public; there is no pull
    # secret for Always to re-check. image.pullPolicy sets it in the chart.
    "container-image-pull-policy": "pinned tag or digest",
}

# Checks that must have run on the Deployment, so a pass is not an empty score.
CORE_CHECKS = {"container-resources", "pod-probes", "deployment-has-poddisruptionbudget",
               "deployment-has-host-podantiaffinity", "container-security-context-user-group-id",
               "container-ephemeral-storage-request-and-limit", *OPTIONAL}  # fmt: skip

Finding = tuple[str, str, str]  # object, check id, summary


def score(kube_score: str, objects: Objects, ignored: tuple[str, ...] = tuple(IGNORED)) -> Any:
    args = [kube_score, "score", "--output-format", "json", "--kubernetes-version", KUBERNETES]
    args += [f"--enable-optional-test={t}" for t in OPTIONAL]
    args += [f"--ignore-test={t}" for t in ignored]
    out = subprocess.run(
        [*args, "-"], input=documents(objects), capture_output=True, text=True, timeout=60
    )
    assert out.stderr == "", out.stderr
    assert out.returncode in (0, 1), out.stdout  # 1: a critical finding
    return json.loads(out.stdout)


def findings(scored: Any) -> list[Finding]:
    """Warnings and critical findings (grade below "almost OK"), skipped checks excluded."""
    found = []
    for o in scored:
        for c in o["checks"]:
            if not c["skipped"] and c["grade"] < 7:
                summaries = "; ".join(x["summary"] for x in c["comments"] or [])
                found.append((o["object_name"], c["check"]["id"], summaries))
    return found


def checked(scored: Any) -> set[str]:
    return {c["check"]["id"] for o in scored for c in o["checks"] if not c["skipped"]}


@pytest.mark.parametrize("layout", sorted(LAYOUTS), ids=lambda d: d.replace(".", "default"))
def test_the_layout_passes(kubectl: str, kube_score: str, layout: str) -> None:
    scored = score(kube_score, kustomize(kubectl, ROOT / "manifests" / layout))
    assert findings(scored) == []
    assert checked(scored) >= CORE_CHECKS


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_chart_passes(helm: str, kube_score: str, name: str) -> None:
    values = VALUE_SETS[name]
    scored = score(kube_score, template(helm, values))
    found = findings(scored)
    core = set(CORE_CHECKS)
    if name == "single":  # one replica on purpose; kube-score skips what needs two
        assert [f[1] for f in found] == ["deployment-replicas"], found
        core -= {"deployment-has-poddisruptionbudget", "deployment-has-host-podantiaffinity"}
    else:
        assert found == []
    assert checked(scored) >= core


def test_the_chart_network_policy_passes(helm: str, kube_score: str) -> None:
    """networkPolicy.enabled covers the pods' ingress; kube-score wants egress declared too,
    which egress: [{}] does (open, as kube-state-metrics' values suggest) and rules narrow."""
    ignored = tuple(t for t in IGNORED if t != "pod-networkpolicy")
    scored = score(kube_score, template(helm, CARRIED), ignored=ignored)
    assert {(f[1], f[2]) for f in findings(scored)} == {
        ("pod-networkpolicy", "The pod does not have a matching egress NetworkPolicy")}  # fmt: skip
    declared = {**CARRIED, "networkPolicy": {"enabled": True, "egress": [{}]}}
    scored = score(kube_score, template(helm, declared), ignored=ignored)
    assert findings(scored) == []
    assert checked(scored) >= {"pod-networkpolicy", "networkpolicy-targets-pod", *CORE_CHECKS}


def test_each_exception_is_still_needed(kubectl: str, kube_score: str) -> None:
    scored = score(kube_score, kustomize(kubectl, ROOT / "manifests"), ignored=())
    assert sorted({f[1] for f in findings(scored)}) == sorted(IGNORED)


def test_a_real_problem_is_found(helm: str, kube_score: str) -> None:
    """Values that drop the limits and the read-only root: kube-score says so."""
    loose = template(helm, {"resources": {"limits": None},
                            "securityContext": {"readOnlyRootFilesystem": False}})  # fmt: skip
    found = {f[1] for f in findings(score(kube_score, loose))}
    assert {"container-resources", "container-security-context-readonlyrootfilesystem"} <= found
