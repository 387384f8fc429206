"""One real local Flux cluster per test session (see ``devenv.cluster``).

Without the built tools the cluster tests are skipped with the reason, unless
``FOT_REQUIRE_CLUSTER=1`` (CI): then a missing tool fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client, config

from devenv.cluster import Cluster, missing_tools
from devenv.exporter import running_exporter as start_exporter
from devenv.flux import KUSTOMIZE_CONTROLLER, missing_kustomize_controller
from devenv.push import Pusher


@pytest.fixture(scope="session")
def cluster_tools() -> None:
    missing = missing_tools()
    if not missing:
        return
    message = "local Flux cluster tools missing (scripts/build-tools): " + ", ".join(missing)
    if os.environ.get("FOT_REQUIRE_CLUSTER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def flux_cluster(
    cluster_tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with Cluster.start(tmp_path_factory.mktemp("flux-cluster")) as cluster:
        print(f"\ncluster up: {cluster.timings}")
        yield cluster


@pytest.fixture(scope="session")
def kustomize_controller(flux_cluster: Cluster) -> str:
    """kustomize-controller in the session's cluster, started by the first test that asks
    (stopped with the cluster); its metrics address."""
    missing = missing_kustomize_controller()
    if missing:
        message = "kustomize-controller missing (scripts/build-tools): " + ", ".join(missing)
        if os.environ.get("FOT_REQUIRE_CLUSTER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    metrics = flux_cluster.start_kustomize_controller()
    print(f"\nkustomize-controller up in {flux_cluster.timings[KUSTOMIZE_CONTROLLER]}s")
    return metrics


@pytest.fixture(scope="session")
def kube(flux_cluster: Cluster) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(flux_cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def custom(kube: Any) -> Any:
    return client.CustomObjectsApi(kube)


@pytest.fixture
def namespace(kube: Any) -> str:
    """A fresh namespace per test. Never deleted: no namespace controller runs here."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    client.CoreV1Api(kube).create_namespace(namespace)
    return name


@pytest.fixture
def pusher(flux_cluster: Cluster) -> Iterator[Pusher]:
    with Pusher(flux_cluster.registry_url) as push:
        yield push


@contextmanager
def running_exporter(cluster: Cluster) -> Iterator[str]:
    """``flux-oci-trigger run`` against the cluster, fast settings; yields its base URL once
    it is ready, and stops it on exit (a later one starts with no memory)."""
    log = cluster.logs / f"flux-oci-trigger-{uuid.uuid4().hex[:8]}.log"
    with start_exporter(cluster.kubeconfig, log, "--tag-ttl", "2s", "--interval", "2s",
                        min_interval="1s") as base:  # fmt: skip
        yield base


@pytest.fixture
def exporter(flux_cluster: Cluster) -> Iterator[str]:
    with running_exporter(flux_cluster) as base:
        yield base
