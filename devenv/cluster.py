"""A real local Flux cluster: etcd, kube-apiserver, source-controller, helm-controller,
a distribution registry and Prometheus, all on loopback.

One code path serves the pytest session (``Cluster.start`` … ``stop`` in one process) and
``scripts/dev-env`` (``up`` saves a state file and returns; ``down`` in a later process loads
it and stops exactly the pids it lists). Nothing runs in pods: there is no kubelet, so the
controllers are local processes using the admin kubeconfig.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv import flux, kubeapi, prometheus
from devenv.procs import Proc
from devenv.registry import RunningRegistry, registry_binary, start_registry
from devenv.tools import tool_dir

STATE_FILE = "state.json"


def missing_tools() -> list[str]:
    """Binaries ``Cluster.start`` needs that are not built or installed."""
    needed = {**kubeapi.binaries(), **flux.controller_binaries()}
    missing = [f"{name} ({path})" for name, path in needed.items() if not path.is_file()]
    if registry_binary("v3") is None:
        missing.append("distribution registry (scripts/build-tools distribution)")
    if prometheus.prometheus_binary() is None:
        missing.append("prometheus (scripts/install-packages)")
    for name in ("source-controller", "helm-controller"):
        if not any((tool_dir(name) / "crds").glob("*.yaml")):
            missing.append(f"CRDs of {name} ({tool_dir(name) / 'crds'})")
    return missing


@dataclass
class Cluster:
    workdir: Path
    kubeconfig: Path
    server: str  # https://127.0.0.1:PORT
    registry: str  # 127.0.0.1:PORT
    prometheus_url: str
    prometheus_config: Path
    artifact_server: str  # source-controller's artifact server, 127.0.0.1:PORT
    metrics: dict[str, str]  # controller -> 127.0.0.1:PORT of its /metrics
    procs: list[Proc] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _plane: kubeapi.ControlPlane | None = field(default=None, repr=False)
    _registry: RunningRegistry | None = field(default=None, repr=False)
    flux_events_addr: str = ""  # notification-controller's events endpoint, once started

    @property
    def registry_url(self) -> str:
        return f"http://{self.registry}"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        notify: str | None = None,
        notify_headers: Mapping[str, str] | None = None,
    ) -> Cluster:
        """Start everything under ``workdir`` (emptied first); stop it all if a step fails.
        ``notify``: the URL the registry POSTs push notifications to (with ``notify_headers``)."""
        missing = missing_tools()
        if missing:
            raise FileNotFoundError("not available: " + ", ".join(missing))
        if workdir.exists():
            shutil.rmtree(workdir)
        logs = workdir / "logs"
        logs.mkdir(parents=True)
        timings: dict[str, float] = {}
        started: list[Proc] = []
        plane: kubeapi.ControlPlane | None = None
        registry: RunningRegistry | None = None

        def timed(step: str, fn: Callable[[], Any]) -> Any:
            begin = time.monotonic()
            result = fn()
            timings[step] = round(time.monotonic() - begin, 2)
            return result

        try:
            plane = timed("control-plane", lambda: kubeapi.start_control_plane(workdir))
            assert plane is not None
            for name, popen in zip(("etcd", "kube-apiserver"), plane.processes, strict=True):
                started.append(Proc.adopt(name, popen, logs / f"{name}.log"))
            timed("namespace", lambda: _create_namespace(plane.kubeconfig, flux.NAMESPACE))
            registry = timed(
                "registry",
                lambda: start_registry(
                    workdir / "registry",
                    implementation="v3",
                    notifications_url=notify,
                    notification_headers=notify_headers,
                ),
            )
            assert registry is not None
            (logs / "registry.log").symlink_to(registry.log_path)
            started.append(Proc.adopt("registry", registry.process, registry.log_path))
            source, artifact_server = timed(
                "source-controller",
                lambda: flux.start_source_controller(plane.kubeconfig, workdir / "artifacts", logs),
            )
            started.append(source.proc)
            helm = timed(
                "helm-controller", lambda: flux.start_helm_controller(plane.kubeconfig, logs)
            )
            started.append(helm.proc)
            metrics = {
                "source-controller": source.metrics_addr,
                "helm-controller": helm.metrics_addr,
            }
            prom, prom_url, prom_config = timed(
                "prometheus",
                lambda: prometheus.start_prometheus(
                    workdir / "prometheus", logs, {job: [a] for job, a in metrics.items()}
                ),
            )
            started.append(prom)
        except BaseException:
            for proc in reversed(started):
                if proc.name not in ("etcd", "kube-apiserver", "registry"):
                    proc.stop()
            if registry is not None:
                registry.stop()
            if plane is not None:
                plane.stop()
            raise
        cluster = cls(
            workdir, plane.kubeconfig, plane.server, registry.host, prom_url, prom_config,
            artifact_server, metrics, started, timings, plane, registry,
        )  # fmt: skip
        cluster.save()
        return cluster

    def stop(self) -> None:
        """Stop every process, last started first; processes already gone are fine."""
        for proc in reversed(self.procs):
            if self._plane is not None and proc.name in ("etcd", "kube-apiserver"):
                continue
            if self._registry is not None and proc.name == "registry":
                self._registry.stop()
                continue
            proc.stop()
        if self._plane is not None:
            self._plane.stop()  # also closes its log files
        self.state_path.unlink(missing_ok=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_kustomize_controller(self) -> str:
        """Start kustomize-controller (its CRD installed first) unless it already runs;
        returns its metrics address. Stopped with the rest, recorded in the state file."""
        name = flux.KUSTOMIZE_CONTROLLER
        if any(proc.name == name and proc.alive() for proc in self.procs):
            return self.metrics[name]
        begin = time.monotonic()
        controller = flux.start_kustomize_controller(self.kubeconfig, self.logs)
        self.timings[name] = round(time.monotonic() - begin, 2)
        self.procs = [proc for proc in self.procs if proc.name != name]
        self.procs.append(controller.proc)
        self.metrics[name] = controller.metrics_addr
        self.save()
        return controller.metrics_addr

    def start_notification_controller(self) -> str:
        """Start notification-controller (its CRDs installed first) unless it already runs;
        returns its events endpoint, ``http://127.0.0.1:PORT/``. Stopped with the rest."""
        name = flux.NOTIFICATION_CONTROLLER
        if any(proc.name == name and proc.alive() for proc in self.procs):
            return self.flux_events_addr
        begin = time.monotonic()
        controller, events = flux.start_notification_controller(self.kubeconfig, self.logs)
        self.timings[name] = round(time.monotonic() - begin, 2)
        self.procs = [proc for proc in self.procs if proc.name != name]
        self.procs.append(controller.proc)
        self.metrics[name] = controller.metrics_addr
        self.flux_events_addr = f"http://{events}/"
        self.save()
        return self.flux_events_addr

    def add_scrape_target(self, job: str, target: str) -> None:
        prometheus.add_scrape_target(self.prometheus_config, self.prometheus_url, job, target)

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "REGISTRY": self.registry,
            "PROMETHEUS_URL": self.prometheus_url,
        }

    def status(self) -> dict[str, bool]:
        return {proc.name: proc.alive() for proc in self.procs}

    # state file: what `scripts/dev-env down|env|status` reads in a later process

    @property
    def state_path(self) -> Path:
        return self.workdir / STATE_FILE

    def save(self) -> None:
        state = {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "registry": self.registry,
            "prometheus_url": self.prometheus_url,
            "prometheus_config": str(self.prometheus_config),
            "artifact_server": self.artifact_server,
            "metrics": self.metrics,
            "timings": self.timings,
            "flux_events_addr": self.flux_events_addr,
            "processes": [proc.to_json() for proc in self.procs],
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)

    @classmethod
    def load(cls, workdir: Path) -> Cluster | None:
        """The cluster ``up`` recorded under ``workdir``, or None when there is none."""
        path = workdir / STATE_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        return cls(
            Path(state["workdir"]),
            Path(state["kubeconfig"]),
            state["server"],
            state["registry"],
            state["prometheus_url"],
            Path(state["prometheus_config"]),
            state["artifact_server"],
            dict(state["metrics"]),
            [Proc.from_json(p) for p in state["processes"]],
            dict(state["timings"]),
            flux_events_addr=state.get("flux_events_addr", ""),
        )


def _create_namespace(kubeconfig: Path, name: str) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        client.CoreV1Api(api).create_namespace(namespace)
    finally:
        api.close()
