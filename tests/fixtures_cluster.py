"""Session fixtures shared by every test package: a real control plane (etcd +
kube-apiserver + Flux CRDs) and a real registry. Loaded from tests/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devenv.kubeapi import ControlPlane, binaries, start_control_plane
from devenv.registry import RunningRegistry, registry_binary, start_registry


def _need(what: str, present: bool) -> None:
    if present:
        return
    message = f"{what} is missing: run scripts/build-tools and scripts/install-packages"
    if os.environ.get("FOT_REQUIRE_CLUSTER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    _need("etcd/kube-apiserver", all(p.is_file() for p in binaries().values()))
    with start_control_plane(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    _need("docker-registry", registry_binary("debian") is not None)
    with start_registry(tmp_path_factory.mktemp("e2e-registry"), implementation="debian") as reg:
        yield reg


@pytest.fixture(scope="session")
def flux_cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane, under the name the manifest tests ask for."""
    return control_plane
