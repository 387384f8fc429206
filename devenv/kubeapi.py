"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, with Flux's CRDs.

Both binaries come from scripts/build-tools. Certificates (a CA, the serving certificate,
an admin client certificate in ``system:masters``, the service-account key pair) are made
fresh with ``cryptography``. No kubelet, no scheduler: objects live, nothing runs in pods.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devenv.pki import write_pki
from devenv.ports import free_port, wait_for_port
from devenv.procs import reap
from devenv.tools import tool_dir


@dataclass
class ControlPlane:
    workdir: Path
    kubeconfig: Path
    server: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    etcd_port: int = 0
    api_port: int = 0

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in reversed(self.processes):
            reap(proc, 5.0)  # the API server holds watches open until it exits
        for log in self.logs:
            log.close()
        self.processes.clear()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API server faults, for tests of watch resumption and relisting -------------------

    def stop_apiserver(self, grace: float = 3.0) -> None:
        """Stop the API server (etcd keeps running): clients see connections refused. It
        stops listening at once but holds open watches until it exits: after ``grace``
        seconds it is killed, as a crashed or evicted server would be."""
        proc = self.processes.pop()
        proc.terminate()
        reap(proc, grace)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Start the API server again on the same port; its watch cache starts empty."""
        self.processes.append(_spawn_apiserver(self, self.api_port, self.workdir, "restarted"))
        _wait_ready(self.kubeconfig, self.processes, timeout)

    @contextmanager
    def replica(self, timeout: float = 90.0) -> Iterator[Path]:
        """A second API server on the same etcd (as in an HA control plane); yields its
        kubeconfig. Changes made through it are changes to the one cluster."""
        port = free_port()
        workdir = self.workdir / f"replica-{port}"
        workdir.mkdir()
        kubeconfig = workdir / "kubeconfig"
        _write_kubeconfig(kubeconfig, f"https://127.0.0.1:{port}", self.workdir / "pki")
        proc = _spawn_apiserver(self, port, workdir, f"replica-{port}")
        try:
            _wait_ready(kubeconfig, [proc], timeout)
            yield kubeconfig
        finally:
            proc.terminate()
            reap(proc, 3.0)


def binaries() -> dict[str, Path]:
    return {
        "etcd": tool_dir("etcd") / "etcd",
        "kube-apiserver": tool_dir("kube-apiserver") / "kube-apiserver",
    }


def crd_files() -> list[Path]:
    found: list[Path] = []
    for name in ("source-controller", "helm-controller"):
        found += sorted((tool_dir(name) / "crds").glob("*.yaml"))
    return found


def start_control_plane(workdir: Path, timeout: float = 90.0) -> ControlPlane:
    """etcd + kube-apiserver on free loopback ports, Flux CRDs applied, kubeconfig written."""
    bins = binaries()
    missing = [str(p) for p in bins.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"not built: {', '.join(missing)} (run scripts/build-tools)")
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    pki.mkdir(exist_ok=True)
    write_pki(pki)

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    plane = ControlPlane(
        workdir, workdir / "kubeconfig", f"https://127.0.0.1:{api_port}",
        etcd_port=etcd_port, api_port=api_port,
    )  # fmt: skip
    (workdir / "logs").mkdir(exist_ok=True)
    try:
        log = (workdir / "logs" / "etcd.log").open("wb")
        plane.logs.append(log)
        plane.processes.append(subprocess.Popen([
            str(bins["etcd"]), "--name", "dev", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"dev=http://127.0.0.1:{peer_port}",
            "--log-level", "warn",
        ], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))  # fmt: skip
        wait_for_port(etcd_port, timeout=30)
        plane.processes.append(_spawn_apiserver(plane, api_port, workdir, "kube-apiserver"))
        _write_kubeconfig(plane.kubeconfig, plane.server, pki)
        _wait_ready(plane.kubeconfig, plane.processes, timeout)
        apply_crds(plane.kubeconfig, crd_files())
    except BaseException:
        plane.stop()
        raise
    return plane


def _spawn_apiserver(
    plane: ControlPlane, port: int, workdir: Path, log_name: str
) -> subprocess.Popen[bytes]:
    pki = plane.workdir / "pki"
    log = (plane.workdir / "logs" / f"{log_name}.log").open("ab")
    plane.logs.append(log)
    args = [
        str(binaries()["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{plane.etcd_port}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={port}", f"--cert-dir={workdir / 'certs'}",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--authorization-mode=RBAC",
        "--enable-priority-and-fairness=false",
        "--endpoint-reconciler-type=none",  # a loopback address cannot be an Endpoint
        "--v=1",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {
            "server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "admin"}}],
        "current-context": "dev",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))


def _wait_ready(kubeconfig: Path, processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    from kubernetes import client, config

    deadline = time.monotonic() + timeout
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        while True:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"control plane exited; see {kubeconfig.parent / 'logs'}")
            try:
                client.CoreV1Api(api).read_namespace("default")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kube-apiserver not ready in {timeout:.0f}s") from None
                time.sleep(0.3)
    finally:
        api.close()


def apply_crds(kubeconfig: Path, files: list[Path], timeout: float = 60.0) -> None:
    """Create the CRDs of ``files`` the API server does not have yet (one it has is left
    as it is), and wait until every one is established."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    ext = client.ApiextensionsV1Api(api)
    names = []
    try:
        for path in files:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    try:
                        ext.create_custom_resource_definition(doc)
                    except ApiException as exc:
                        if exc.status != 409:  # 409: already there
                            raise
                    names.append(doc["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                crd = ext.read_custom_resource_definition(name)
                status = crd.status
                conditions = {
                    c.type: c.status for c in (status.conditions if status else None) or []
                }
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not established")
                time.sleep(0.2)
    finally:
        api.close()
