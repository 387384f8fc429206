"""``spec.certSecretRef`` as source-controller reads it: a registry behind a private CA that
wants a client certificate, the Secret in the object's own namespace, never another's."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from kubernetes import client, config

from devenv.kubeapi import ControlPlane
from devenv.push import Pusher
from devenv.registry import RunningRegistry, registry_binary, start_registry
from tests.fixtures.objects import namespace, oci_repository

pytestmark = pytest.mark.cluster
ENABLED = {"oci-trigger.gitlab.com/enabled": "true"}


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRegistry, str]]:
    if registry_binary("debian") is None:
        pytest.fail("docker-registry missing: run scripts/install-packages")
    with start_registry(tmp_path_factory.mktemp("mtls"), tls="mutual") as registry:
        with Pusher(registry.base_url, context=registry.ssl_context()) as push:
            applied = push.flux_artifact("apps/web", "v1.0.0").digest
            push.flux_artifact("apps/web", "v1.1.0")
        yield registry, applied


def secret(api: client.ApiClient, ns: str, name: str, files: Mapping[str, Path]) -> None:
    data: dict[str, bytes | str] = {
        key: base64.b64encode(path.read_bytes()).decode() for key, path in files.items()
    }
    client.CoreV1Api(api).create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=data)
    )


def test_cert_secret_ref_reaches_an_mtls_registry_from_its_own_namespace_only(
    control_plane: ControlPlane, mtls: tuple[RunningRegistry, str]
) -> None:
    registry, applied = mtls
    tls = registry.tls
    assert tls is not None
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        url = f"oci://{registry.host}/apps/web"
        full = {"ca.crt": tls.ca, "tls.crt": tls.client_cert, "tls.key": tls.client_key}
        owner, other = namespace(api, "tls-owner"), namespace(api, "tls-other")
        secret(api, owner, "registry-tls", full)
        secret(api, other, "ca-only", {"ca.crt": tls.ca})
        for ns, name, cert_secret in (
            (owner, "web", "registry-tls"),
            (other, "borrower", "registry-tls"),  # exists only in the owner's namespace
            (other, "no-client-cert", "ca-only"),
        ):
            oci_repository(api, ns, name, url, {"semver": ">=1.0.0"}, ENABLED,
                           applied=f"v1.0.0@{applied}", insecure=False,
                           cert_secret=cert_secret)  # fmt: skip
    finally:
        api.close()

    out = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--output", "json",
         "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {(r["namespace"], r["name"]): r for r in json.loads(out.stdout)}
    web = rows[("tls-owner", "web")]
    assert (web["state"], web["would_request"]) == ("behind", True)
    assert web["freshest"].startswith("v1.1.0@sha256:")
    borrower = rows[("tls-other", "borrower")]
    assert (borrower["state"], borrower["reason"]) == ("config_error", "config")
    refused = rows[("tls-other", "no-client-cert")]
    assert (refused["state"], refused["reason"]) == ("error", "unavailable")
    assert "PRIVATE KEY" not in out.stdout + out.stderr
