"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, with Flux's CRDs.

Both binaries come from scripts/build-tools. Certificates (a CA, the serving certificate,
an admin client certificate in ``system:masters``, the service-account key pair) are made
fresh with ``cryptography``. No kubelet, no scheduler: objects live, nothing runs in pods.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devenv.ports import free_port, wait_for_port
from devenv.tools import tool_dir


def _key_pem(key: Any) -> bytes:
    out: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return out


def _cert(
    subject: str, key: Any, issuer: tuple[x509.Name, Any] | None, *, ca: bool = False,
    org: str | None = None, server: bool = False,
) -> x509.Certificate:  # fmt: skip
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ]),
            critical=False,
        )  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class ControlPlane:
    workdir: Path
    kubeconfig: Path
    server: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
        self.processes.clear()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("flux-oci-trigger-dev-ca", ca_key, None, ca=True)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving = _cert("kube-apiserver", serving_key, (ca.subject, ca_key), server=True)
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _cert("admin", admin_key, (ca.subject, ca_key), org="system:masters")
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    files = {
        "ca.crt": ca.public_bytes(pem),
        "serving.crt": serving.public_bytes(pem),
        "serving.key": _key_pem(serving_key),
        "admin.crt": admin.public_bytes(pem),
        "admin.key": _key_pem(admin_key),
        "sa.key": _key_pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for name, data in files.items():
        (pki / name).write_bytes(data)

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    plane = ControlPlane(workdir, workdir / "kubeconfig", f"https://127.0.0.1:{api_port}")
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)

    def spawn(name: str, args: list[str]) -> None:
        log = (logs / f"{name}.log").open("wb")
        plane.logs.append(log)
        plane.processes.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        )

    try:
        spawn("etcd", [
            str(bins["etcd"]), "--name", "dev", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"dev=http://127.0.0.1:{peer_port}",
            "--log-level", "warn",
        ])  # fmt: skip
        wait_for_port(etcd_port, timeout=30)
        spawn("kube-apiserver", [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}", f"--cert-dir={workdir / 'certs'}",
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
        ])  # fmt: skip
        _write_kubeconfig(plane, pki)
        _wait_ready(plane, timeout)
        apply_crds(plane.kubeconfig, crd_files())
    except BaseException:
        plane.stop()
        raise
    return plane


def _write_kubeconfig(plane: ControlPlane, pki: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {
            "server": plane.server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "admin"}}],
        "current-context": "dev",
    }  # fmt: skip
    plane.kubeconfig.write_text(yaml.safe_dump(config))


def _wait_ready(plane: ControlPlane, timeout: float) -> None:
    from kubernetes import client, config

    deadline = time.monotonic() + timeout
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        while True:
            if any(p.poll() is not None for p in plane.processes):
                raise RuntimeError(f"control plane exited; see {plane.workdir / 'logs'}")
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
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    ext = client.ApiextensionsV1Api(api)
    names = []
    try:
        for path in files:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    ext.create_custom_resource_definition(doc)
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
