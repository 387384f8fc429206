"""Rendering the chart with helm, the value sets that mirror the kustomize layouts, and the
chart packaged and pushed to a registry as a release publishes it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.ops.conftest import ROOT

CHART = ROOT / "charts" / "flux-oci-trigger"
CHART_VERSION: str = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
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
    helm: str,
    values: Values,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    args: tuple[str, ...] = (),
) -> Objects:
    out = _helm(helm, "template", values, release, "--namespace", namespace, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def template_error(helm: str, values: Values, *args: str) -> str:
    """helm's message for values the chart refuses; fails the test if they render."""
    out = _helm(helm, "template", values, RELEASE, "--namespace", NAMESPACE, *args)
    assert out.returncode != 0, f"rendered: {values}"
    return out.stderr


def lint(helm: str, values: Values) -> subprocess.CompletedProcess[str]:
    return _helm(helm, "lint", values, "--strict", "--namespace", NAMESPACE)


def documents(objects: Objects) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def write(path: Path, objects: Objects) -> Path:
    path.write_text(documents(objects))
    return path


def helm_env(home: Path) -> dict[str, str]:
    """The environment for a helm that keeps its cache, configuration and registry
    credentials under ``home``: pulling a chart leaves nothing in the user's directories."""
    dirs = {"HELM_CACHE_HOME": "cache", "HELM_CONFIG_HOME": "config", "HELM_DATA_HOME": "data"}
    return {**os.environ, **{k: str(home / v) for k, v in dirs.items()}}


def push_chart(helm: str, host: str, workdir: Path) -> str:
    """``helm package`` the chart and ``helm push`` it to oci://HOST/charts (plain HTTP), as a
    release publishes it; returns what users install: oci://HOST/charts/flux-oci-trigger."""
    env = helm_env(workdir)
    for args in (["package", str(CHART), "--destination", str(workdir)],
                 ["push", str(workdir / f"flux-oci-trigger-{CHART_VERSION}.tgz"),
                  f"oci://{host}/charts", "--plain-http"]):  # fmt: skip
        out = subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    assert f"Pushed: {host}/charts/flux-oci-trigger:{CHART_VERSION}" in out.stdout, out.stdout
    return f"oci://{host}/charts/flux-oci-trigger"
