"""Where scripts/build-tools put each Go-built tool, from the versions in scripts/tools.env."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS_ENV = ROOT / "scripts" / "tools.env"
ORACLE_SOURCE = ROOT / "tools" / "flux-oracle"
ORACLE_FILES = ("go.mod", "go.sum", "main.go")  # digested in this order, as build-tools does
PROMQL_LINT_SOURCE = ROOT / "tools" / "promql-lint"
FLUX_PUSH_SOURCE = ROOT / "tools" / "flux-push"
FLUX_PUSH_FILES = ("go.mod", "go.sum", "main.go")  # digested in this order, as build-tools does


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in TOOLS_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def tools_dir() -> Path:
    default = Path.home() / ".cache" / "flux-oci-trigger" / "tools"
    return Path(os.environ.get("FOT_TOOLS_DIR") or default)


def oracle_version() -> str:
    """flux-oracle's version: the fluxcd/pkg/version it links and a digest of its sources."""
    digest = hashlib.sha256(b"".join((ORACLE_SOURCE / n).read_bytes() for n in ORACLE_FILES))
    return f"{versions()['FLUXCD_PKG_VERSION_VERSION']}-{digest.hexdigest()[:12]}"


def promql_lint_version() -> str:
    """promql-lint's version: the prometheus module whose parser it links and a digest of
    go.mod, go.sum and its *.go files in name order, as build-tools computes it."""
    files = [PROMQL_LINT_SOURCE / "go.mod", PROMQL_LINT_SOURCE / "go.sum"]
    files += sorted(PROMQL_LINT_SOURCE.glob("*.go"), key=lambda p: p.name.encode())
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files))
    return f"{versions()['PROMETHEUS_PARSER_VERSION']}-{digest.hexdigest()[:12]}"


def flux_push_version() -> str:
    """flux-push's version: the fluxcd/pkg/oci it links and a digest of its sources."""
    digest = hashlib.sha256(b"".join((FLUX_PUSH_SOURCE / n).read_bytes() for n in FLUX_PUSH_FILES))
    return f"{versions()['FLUXCD_PKG_OCI_VERSION']}-{digest.hexdigest()[:12]}"


def tool_dir(name: str) -> Path:
    """``<tools>/<name>-<version>`` for one of build-tools' names (kube-apiserver, etcd, ...)."""
    if name == "flux-oracle":
        return tools_dir() / f"{name}-{oracle_version()}"
    if name == "promql-lint":
        return tools_dir() / f"{name}-{promql_lint_version()}"
    if name == "flux-push":
        return tools_dir() / f"{name}-{flux_push_version()}"
    key = {
        "kube-apiserver": "KUBERNETES_VERSION",
        "kubectl": "KUBERNETES_VERSION",
        "etcd": "ETCD_VERSION",
        "source-controller": "SOURCE_CONTROLLER_VERSION",
        "helm-controller": "HELM_CONTROLLER_VERSION",
        "kustomize-controller": "KUSTOMIZE_CONTROLLER_VERSION",
        "notification-controller": "NOTIFICATION_CONTROLLER_VERSION",
        "helm": "HELM_VERSION",
        "kube-score": "KUBE_SCORE_VERSION",
        "distribution": "DISTRIBUTION_VERSION",
    }[name]
    suffix = "-stamped" if name == "kube-apiserver" else ""  # its version linked in
    return tools_dir() / f"{name}-{versions()[key]}{suffix}"


def binary(name: str) -> str | None:
    """The built ``name`` (see :func:`tool_dir`) when present, else ``name`` on PATH."""
    import shutil

    built = tool_dir(name) / name
    return str(built) if os.access(built, os.X_OK) else shutil.which(name)
