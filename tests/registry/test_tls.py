"""HTTPS registries: a private CA (``--ca-file``, ``certSecretRef``'s ``ca.crt``) and
client certificates (``tls.crt``/``tls.key``), against Debian's registry serving TLS."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devenv.push import Pusher
from devenv.registry import RunningRegistry, start_registry
from exporter.model import RepositoryRef, TLSOptions
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryUnavailable
from tests.registry.conftest import _require

pytestmark = pytest.mark.registry

REPO = "team/app"


def _start(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[RunningRegistry]:
    _require("debian")
    workdir = tmp_path_factory.mktemp(f"tls-{mode}")
    with start_registry(workdir, tls=mode) as registry:  # type: ignore[arg-type]
        with Pusher(registry.base_url, context=registry.ssl_context()) as push:
            for tag in ("v1.0.0", "v1.1.0", "v2.0.0-rc.1"):
                push.flux_artifact(REPO, tag)
        yield registry


@pytest.fixture(scope="module")
def https_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    yield from _start(tmp_path_factory, "server")


@pytest.fixture(scope="module")
def mtls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    yield from _start(tmp_path_factory, "mutual")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_tags_trusts_a_private_ca_given_with_ca_file(https_registry: RunningRegistry) -> None:
    assert https_registry.tls is not None
    out = run("tags", f"oci://{https_registry.host}/{REPO}", "--semver", ">=1.0.0",
              "--ca-file", str(https_registry.tls.ca), "--output", "json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sorted(report["tags"]) == ["v1.0.0", "v1.1.0", "v2.0.0-rc.1"]
    assert report["selected"]["tag"] == "v1.1.0"
    assert report["selected"]["digest"].startswith("sha256:")


def test_tags_without_the_ca_fails_with_one_clear_line(https_registry: RunningRegistry) -> None:
    out = run("tags", f"oci://{https_registry.host}/{REPO}")
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "TLS certificate verification failed" in lines[0]
    assert "Traceback" not in out.stderr


def test_a_registry_wanting_a_client_certificate(mtls_registry: RunningRegistry) -> None:
    tls = mtls_registry.tls
    assert tls is not None
    repo = RepositoryRef(mtls_registry.host, REPO)
    with_cert = TLSOptions(
        ca_pem=tls.ca.read_bytes(),
        client_cert_pem=tls.client_cert.read_bytes(),
        client_key_pem=tls.client_key.read_bytes(),
    )
    ca_only = TLSOptions(ca_pem=tls.ca.read_bytes())
    with RegistryClient(retries=0) as client:
        assert sorted(client.list_tags(repo, tls=with_cert)) == ["v1.0.0", "v1.1.0", "v2.0.0-rc.1"]
        with pytest.raises(RegistryUnavailable) as refused:
            client.list_tags(repo, tls=ca_only)
    message = str(refused.value)
    assert message.startswith(f"{mtls_registry.host}: TLS handshake failed")
    assert "client certificate" in message
    assert "PRIVATE KEY" not in message and "CERTIFICATE-----" not in message
