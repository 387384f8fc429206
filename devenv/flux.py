"""Flux's source-controller, helm-controller, kustomize-controller and
notification-controller as local processes against a kube-apiserver.

There is no kubelet, so the controllers cannot run in pods: they run here with the admin
kubeconfig, every port on loopback. source-controller serves its artifacts on
``storage_addr`` and advertises the same address, so helm-controller can download charts
and kustomize-controller manifests. kustomize-controller and notification-controller are
started only when asked for (their CRDs installed first): most tests never need them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devenv.kubeapi import apply_crds
from devenv.ports import free_port, wait_for_http
from devenv.procs import Proc, spawn
from devenv.tools import tool_dir

NAMESPACE = "flux-system"
KUSTOMIZE_CONTROLLER = "kustomize-controller"
NOTIFICATION_CONTROLLER = "notification-controller"


def controller_binaries() -> dict[str, Path]:
    """The controllers every cluster starts (kustomize-controller is on demand)."""
    return {name: tool_dir(name) / name for name in ("source-controller", "helm-controller")}


def missing_controller(name: str) -> list[str]:
    """What starting an on-demand controller (kustomize-controller,
    notification-controller) needs and is not built: its binary, its CRDs."""
    directory = tool_dir(name)
    missing = []
    if not (directory / name).is_file():
        missing.append(f"{name} ({directory / name})")
    if not any((directory / "crds").glob("*.yaml")):
        missing.append(f"CRDs of {name} ({directory / 'crds'})")
    return missing


def missing_kustomize_controller() -> list[str]:
    """What :func:`start_kustomize_controller` needs and is not built."""
    return missing_controller(KUSTOMIZE_CONTROLLER)


@dataclass
class Controller:
    proc: Proc
    metrics_addr: str  # "127.0.0.1:PORT"
    health_addr: str


def _env(kubeconfig: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "KUBECONFIG": str(kubeconfig),
        "RUNTIME_NAMESPACE": NAMESPACE,
    }


def _start(name: str, extra: list[str], kubeconfig: Path, logs: Path, timeout: float) -> Controller:
    binary = tool_dir(name) / name
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is not built (run scripts/build-tools {name})")
    metrics = f"127.0.0.1:{free_port()}"
    health = f"127.0.0.1:{free_port()}"
    argv = [
        str(binary),
        f"--metrics-addr={metrics}",
        f"--health-addr={health}",
        "--enable-leader-election=false",
        "--log-level=debug",
        *extra,
    ]
    proc = spawn(name, argv, logs / f"{name}.log", env=_env(kubeconfig))
    try:
        wait_for_http(f"http://{health}/readyz", timeout=timeout, ok_codes=(200,))
    except BaseException:
        proc.stop()
        raise
    if not proc.alive():
        raise RuntimeError(f"{name} exited; see {logs / f'{name}.log'}")
    return Controller(proc, metrics, health)


def start_source_controller(
    kubeconfig: Path, storage: Path, logs: Path, timeout: float = 60.0
) -> tuple[Controller, str]:
    """Returns the controller and its artifact server address ``127.0.0.1:PORT``."""
    storage.mkdir(parents=True, exist_ok=True)
    storage_addr = f"127.0.0.1:{free_port()}"
    extra = [
        f"--storage-path={storage}",
        f"--storage-addr={storage_addr}",
        f"--storage-adv-addr={storage_addr}",
    ]
    return _start("source-controller", extra, kubeconfig, logs, timeout), storage_addr


def start_helm_controller(kubeconfig: Path, logs: Path, timeout: float = 60.0) -> Controller:
    return _start("helm-controller", [], kubeconfig, logs, timeout)


def start_kustomize_controller(kubeconfig: Path, logs: Path, timeout: float = 60.0) -> Controller:
    """Install the Kustomization CRD (once) and start kustomize-controller. It fetches
    artifacts from the URL source-controller advertises in their status."""
    missing = missing_kustomize_controller()
    if missing:
        raise FileNotFoundError(
            f"not built: {', '.join(missing)} (run scripts/build-tools {KUSTOMIZE_CONTROLLER})"
        )
    crds = sorted((tool_dir(KUSTOMIZE_CONTROLLER) / "crds").glob("*.yaml"))
    apply_crds(kubeconfig, crds)
    return _start(KUSTOMIZE_CONTROLLER, [], kubeconfig, logs, timeout)


def start_notification_controller(
    kubeconfig: Path, logs: Path, timeout: float = 60.0
) -> tuple[Controller, str]:
    """Install the Alert, Provider and Receiver CRDs (once) and start
    notification-controller; returns it and its event server's address ``127.0.0.1:PORT``
    (what Flux's controllers get as ``--events-addr``)."""
    missing = missing_controller(NOTIFICATION_CONTROLLER)
    if missing:
        raise FileNotFoundError(
            f"not built: {', '.join(missing)} (run scripts/build-tools {NOTIFICATION_CONTROLLER})"
        )
    apply_crds(kubeconfig, sorted((tool_dir(NOTIFICATION_CONTROLLER) / "crds").glob("*.yaml")))
    events = f"127.0.0.1:{free_port()}"
    extra = [f"--events-addr={events}", f"--receiverAddr=127.0.0.1:{free_port()}"]
    return _start(NOTIFICATION_CONTROLLER, extra, kubeconfig, logs, timeout), events
