"""Certificates for the local control plane, made fresh with ``cryptography``: a CA, the
API server's serving certificate (localhost and 127.0.0.1), an admin client certificate in
``system:masters`` and the service-account key pair. Valid for a week; never reused."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def write_pki(pki: Path) -> None:
    """Write ca.crt, serving.crt/key, admin.crt/key and sa.key/pub into ``pki``."""
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


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a serving certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def write_tls(directory: Path, server_name: str = "registry") -> TlsFiles:
    """Fresh TLS material for a loopback server that may require client certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"{server_name}-ca", ca_key, None, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(server_name, key, (ca.subject, ca_key), server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(f"{server_name}-client", client_key, (ca.subject, ca_key))
    pem = serialization.Encoding.PEM
    files = TlsFiles(*(directory / n for n in ("ca.crt", "tls.crt", "tls.key",
                                                "client.crt", "client.key")))  # fmt: skip
    files.ca.write_bytes(ca.public_bytes(pem))
    files.cert.write_bytes(cert.public_bytes(pem))
    files.key.write_bytes(_key_pem(key))
    files.client_cert.write_bytes(client.public_bytes(pem))
    files.client_key.write_bytes(_key_pem(client_key))
    return files


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
