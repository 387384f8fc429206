"""Rendering the chart with helm, and the value sets that mirror the kustomize layouts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.ops.conftest import ROOT

CHART = ROOT / "charts" / "flux-oci-trigger"
RELEASE = NAMESPACE = "flux-oci-trigger"
# The labels the chart adds for Helm's own bookkeeping, on every object's metadata: the only
# difference from the kustomize layouts the parity tests allow. Nothing selects by them.
CHART_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")

Objects = list[dict[str, Any]]
Values = dict[str, Any]

MONITORING: Values = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
# Each kustomize layout (a directory of manifests/) and the values rendering the same objects.
LAYOUTS: dict[str, Values] = {
    ".": {"namespace": {"create": True}, **MONITORING},
    "base": {"namespace": {"create": True}},
    "namespaced": {"namespace": {"create": True}, "watchNamespaces": ["apps"]},
    "events": {
        "namespace": {"create": True},
        "events": {"enabled": True, "ingress": {"enabled": True}},
        **MONITORING,
    },
    "sharded": {"namespace": {"create": True}, "shards": ["shard1", "shard2"]},
    "workload-identity": {"namespace": {"create": True}, "objectLevelWorkloadIdentity": True},
}


def _helm(helm: str, command: str, values: Values, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, command, *args, str(CHART), "--values", "-"],
        input=yaml.safe_dump(values),
        capture_output=True,
        text=True,
        timeout=60,
    )


def template(
    helm: str, values: Values, release: str = RELEASE, namespace: str = NAMESPACE
) -> Objects:
    out = _helm(helm, "template", values, release, "--namespace", namespace)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def template_error(helm: str, values: Values) -> str:
    """helm's message for values the chart refuses; fails the test if they render."""
    out = _helm(helm, "template", values, RELEASE, "--namespace", NAMESPACE)
    assert out.returncode != 0, f"rendered: {values}"
    return out.stderr


def lint(helm: str, values: Values) -> subprocess.CompletedProcess[str]:
    return _helm(helm, "lint", values, "--strict", "--namespace", NAMESPACE)


def documents(objects: Objects) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def write(path: Path, objects: Objects) -> Path:
    path.write_text(documents(objects))
    return path
