"""Flux's source-controller and helm-controller as local processes against a kube-apiserver.

There is no kubelet, so the controllers cannot run in pods: they run here with the admin
kubeconfig, every port on loopback. source-controller serves its artifacts on
``storage_addr`` and advertises the same address, so helm-controller can download charts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devenv.ports import free_port, wait_for_http
from devenv.procs import Proc, spawn
from devenv.tools import tool_dir

NAMESPACE = "flux-system"


def controller_binaries() -> dict[str, Path]:
    return {name: tool_dir(name) / name for name in ("source-controller", "helm-controller")}


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
    binary = controller_binaries()[name]
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
