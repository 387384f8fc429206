"""A control plane of its own per test module (etcd and kube-apiserver, Flux's CRDs):
modules that stop its API server or watch its Events leave the others alone."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devenv.kubeapi import ControlPlane, binaries, start_control_plane


@pytest.fixture(scope="module")
def plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    if not all(p.is_file() for p in binaries().values()):
        message = "etcd/kube-apiserver missing: run scripts/build-tools"
        if os.environ.get("FOT_REQUIRE_CLUSTER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = request.module.__name__.rsplit(".", 1)[-1]
    with start_control_plane(tmp_path_factory.mktemp(f"{name}-plane")) as plane:
        yield plane
