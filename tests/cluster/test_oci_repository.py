"""source-controller resolves an OCIRepository's semver range against the real registry,
and picks up a newer tag only when asked (interval 1h) through reconcile.fluxcd.io/requestedAt.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devenv.cluster import Cluster
from devenv.push import Pusher
from tests.cluster.flux import SOURCE, is_ready, request_reconcile, revision, wait_for

pytestmark = pytest.mark.cluster


def test_requested_reconcile_moves_to_the_newer_tag(
    flux_cluster: Cluster, custom: Any, namespace: str, pusher: Pusher
) -> None:
    repository = f"{namespace}/app"
    first = pusher.flux_artifact(repository, "v1.0.0")
    pusher.flux_artifact(repository, "v2.0.0-rc.1")  # a prerelease: outside ">=1.0.0"
    custom.create_namespaced_custom_object(SOURCE, "v1", namespace, "ocirepositories", {
        "apiVersion": f"{SOURCE}/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "url": f"oci://{flux_cluster.registry}/{repository}",
            "ref": {"semver": ">=1.0.0"},
            "interval": "1h",
            "insecure": True,
        },
    })  # fmt: skip

    def read() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            SOURCE, "v1", namespace, "ocirepositories", "app"
        )
        return obj

    obj = wait_for(
        read, lambda o: is_ready(o) and revision(o) == f"v1.0.0@{first.digest}",
        "first artifact", flux_cluster.logs,
    )  # fmt: skip
    assert obj["status"]["artifact"]["metadata"]["org.opencontainers.image.created"]

    second = pusher.flux_artifact(repository, "v1.1.0")
    time.sleep(3)  # nothing asked for it and the interval is 1h: still the first artifact
    assert revision(read()) == f"v1.0.0@{first.digest}"

    started = time.monotonic()
    token = request_reconcile(custom, "ocirepositories", namespace, "app")
    obj = wait_for(
        read,
        lambda o: o["status"].get("lastHandledReconcileAt") == token
        and is_ready(o)
        and revision(o) == f"v1.1.0@{second.digest}",
        "requested reconcile", flux_cluster.logs,
    )  # fmt: skip
    latency = time.monotonic() - started
    print(f"\nOCIRepository: requestedAt -> new revision applied in {latency:.2f}s")
    assert obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"] == token
    managers = {f["manager"] for f in obj["metadata"]["managedFields"]}
    assert "flux-client-side-apply" in managers
