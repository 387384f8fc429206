"""An OCIRepository with ``provider: aws`` checked end to end against a real API server:
the object as the API serves it, its ServiceAccount's annotation, a token the API server
issues for that account with STS's audience (TokenRequest), moto's STS and ECR, and a
registry that accepts only what moto minted for the annotated role's account. The
controller's identity (an IRSA token file) serves the object without a ServiceAccount,
and the setting gates the object's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from moto.server import ThreadedMotoServer

from devenv.kubeapi import ControlPlane
from devenv.push import Pusher
from devenv.registry import RunningRegistry, registry_binary, start_registry
from exporter.app.check import Checker
from exporter.cloud.aws import AwsIssuer
from exporter.cloud.broker import CloudCredentials
from exporter.cloud.http import CloudHTTP
from exporter.core.observation import Fresh, RegistryFailure
from exporter.flux.cloud import Provider
from exporter.flux.sources import oci_repository_target
from exporter.flux.targets import Target
from exporter.kube.access import AccessResolver
from exporter.model import ErrorReason
from exporter.registry.cache import TagCache
from exporter.registry.client import RegistryClient
from tests.fixtures.objects import GROUP, VERSION, namespace

pytestmark = [pytest.mark.cluster, pytest.mark.registry]
PREFIX = "oci-trigger.gitlab.com/"
TENANT_ACCOUNT, CONTROLLER_ACCOUNT = "210987654321", "123456789012"
HOST = f"{TENANT_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    if registry_binary("debian") is None:
        pytest.fail("docker-registry missing: run scripts/install-packages")
    # the tenant's role (object-level) and the controller's role live in two accounts: each
    # identity gets its own password from moto, and the registry knows only the tenant's
    users = {"AWS": f"{TENANT_ACCOUNT}-auth-token"}
    with start_registry(tmp_path_factory.mktemp("ecr"), auth="htpasswd", users=users) as reg:
        with Pusher(reg.base_url, reg.push_headers("apps/web")) as push:
            push.flux_artifact("apps/web", "v1.0.0")
            push.flux_artifact("apps/web", "v1.1.0")
        yield reg


def create(api: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OCIRepository",
        "metadata": {"name": name, "namespace": ns, "annotations": {PREFIX + "enabled": "true"}},
        "spec": {"url": f"oci://{HOST}/apps/web", "interval": "1h", "insecure": True,
                 "ref": {"semver": ">=1.0.0"}, **spec},
    }  # fmt: skip
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "ocirepositories", body)
    found = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "ocirepositories", name)
    assert isinstance(found, dict)
    return found


def target_of(obj: dict[str, Any]) -> Target:
    target = oci_repository_target(obj, PREFIX, min_interval=10, default_interval=60)
    assert isinstance(target, Target)
    return target


def test_provider_aws_with_object_and_controller_identity(
    control_plane: ControlPlane, moto: str, ecr: RunningRegistry, tmp_path: Path
) -> None:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    token_file = tmp_path / "irsa-token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.c2ln")
    env = {
        "AWS_ENDPOINT_URL": moto,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ROLE_ARN": f"arn:aws:iam::{CONTROLLER_ACCOUNT}:role/flux-oci-trigger",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
    }
    http = CloudHTTP()
    port = int(ecr.host.rsplit(":", 1)[1])
    registry = RegistryClient(connect_to={(HOST, 80): ("127.0.0.1", port)}, retries=0)
    try:
        ns = namespace(api, "cloud-tenant")
        role = f"arn:aws:iam::{TENANT_ACCOUNT}:role/tenant-reader"
        client.CoreV1Api(api).create_namespaced_service_account(
            ns,
            client.V1ServiceAccount(
                metadata=client.V1ObjectMeta(
                    name="reader", annotations={"eks.amazonaws.com/role-arn": role}
                )
            ),
        )
        with_account = target_of(
            create(api, ns, "web", {"provider": "aws", "serviceAccountName": "reader"})
        )
        controller = target_of(create(api, ns, "web-controller", {"provider": "aws"}))
        cloud = CloudCredentials({Provider.AWS: AwsIssuer(env, http)})
        cache = TagCache(registry, ttl=60, clock=time.monotonic)

        def check(target: Target, object_level: bool) -> Any:
            access = AccessResolver(
                api, clock=time.monotonic, cloud=cloud, object_level_identity=object_level
            )
            return Checker(access, cache).check(target, None)[0]

        fresh = check(with_account, True)
        assert isinstance(fresh, Fresh) and fresh.tag == "v1.1.0", fresh
        gated = check(with_account, False)
        assert isinstance(gated, RegistryFailure) and gated.reason is ErrorReason.CONFIG
        assert "object_level_workload_identity" in gated.message
        # the controller's role is in another account: its password is not the tenant's and
        # the registry refuses it (so the fresh answer above came from the tenant's role)
        refused = check(controller, False)
        assert isinstance(refused, RegistryFailure) and refused.reason is ErrorReason.AUTH
    finally:
        registry.close()
        http.close()
        api.close()
