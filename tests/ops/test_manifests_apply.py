"""The manifests against a real API server: server-side apply, dry run.

Needs the ``flux_cluster`` fixture (an object with a ``.kubeconfig`` path) of the local
Flux cluster; without it the tests skip. The ServiceMonitor and PrometheusRule CRDs come
from the prometheus-operator Go module (``go mod download``) and are installed for real,
as are the Namespace and the ServiceAccount: a dry run creates nothing, and namespaced
objects (and the Pod check's service account) need them to exist. Everything else is
only validated (strict field validation, admission, RBAC escalation checks).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import ROOT, kustomize, require_tool

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.80.1"
CRDS = ("servicemonitors", "prometheusrules")

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def kubeconfig(request: pytest.FixtureRequest) -> str:
    try:
        cluster = request.getfixturevalue("flux_cluster")
    except pytest.FixtureLookupError:
        pytest.skip("no flux_cluster fixture visible from tests/ops")
    return str(cluster.kubeconfig)


def _run(args: list[str], stdin: str = "", cwd: Path | None = None) -> tuple[int, str]:
    out = subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=180)
    return out.returncode, out.stdout + out.stderr


def _documents(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.fixture(scope="module")
def prepared(kubeconfig: str, kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Monitoring CRDs, Namespace and ServiceAccount in place; returns the kubeconfig."""
    go = require_tool("go", "/usr/local/go/bin/go")
    code, out = _run(
        [go, "mod", "download", "-json", f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"],
        cwd=tmp_path_factory.mktemp("gomod"),
    )
    assert code == 0, out
    crd_dir = Path(json.loads(out)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [crd_dir / f"monitoring.coreos.com_{plural}.yaml" for plural in CRDS]
    k = [kubectl, "--kubeconfig", kubeconfig]
    code, out = _run([*k, "apply", "--server-side", *(f"--filename={f}" for f in files)])
    assert code == 0, out
    established = [f"crd/{plural}.monitoring.coreos.com" for plural in CRDS]
    code, out = _run([*k, "wait", "--for=condition=Established", "--timeout=60s", *established])
    assert code == 0, out
    objects = kustomize(kubectl, ROOT / "manifests")
    needed = [o for o in objects if o["kind"] in ("Namespace", "ServiceAccount")]
    code, out = _run([*k, "apply", "--server-side", "-f", "-"], _documents(needed))
    assert code == 0, out
    return kubeconfig


def _dry_run(kubectl: str, kubeconfig: str, objects: list[dict[str, Any]]) -> tuple[int, str]:
    return _run(
        [
            kubectl,
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=flux-oci-trigger-tests",
            "-f",
            "-",
        ],
        _documents(objects),
    )


def test_every_object_applies(prepared: str, kubectl: str) -> None:
    objects = kustomize(kubectl, ROOT / "manifests")
    code, out = _dry_run(kubectl, prepared, objects)
    assert code == 0, out
    for o in objects:
        assert f"{o['kind'].lower()}" in out.lower() and o["metadata"]["name"] in out, o["kind"]
    assert out.count("(server dry run)") == len(objects), out


def test_a_misspelt_field_is_refused(prepared: str, kubectl: str) -> None:
    """The dry run validates strictly, so the test above can fail."""
    objects = kustomize(kubectl, ROOT / "manifests")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = (
        True
    )
    code, out = _dry_run(kubectl, prepared, [deployment])
    assert code != 0
    assert "runAsNonroot" in out


def test_pod_is_admitted_under_restricted_pod_security(prepared: str, kubectl: str) -> None:
    """The Deployment's pod template, as a Pod, passes the namespace's `restricted` policy."""
    objects = kustomize(kubectl, ROOT / "manifests")
    template = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    metadata = {**template["metadata"], "name": "check", "namespace": "flux-oci-trigger"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
    code, out = _dry_run(kubectl, prepared, [pod])
    assert code == 0, out
    loose = copy.deepcopy(pod)
    del loose["spec"]["containers"][0]["securityContext"]["capabilities"]
    code, out = _dry_run(kubectl, prepared, [loose])
    assert code != 0 and "restricted" in out, out
