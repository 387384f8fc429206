"""source-controller resolves an OCIRepository's semver range against the real registry,
and picks up a newer tag only when asked (interval 1h) through reconcile.fluxcd.io/requestedAt.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devenv.cluster import Cluster
from devenv.push import Pusher
from exporter.flux.policy import compile_rule
from exporter.flux.sources import HELM_CHART_LAYER
from exporter.model import Flavor, TagRule
from tests.fixtures.flux import SOURCE, is_ready, request_reconcile, revision, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]


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


@pytest.mark.parametrize(
    ("versions", "semver", "expected", "chart"),
    [
        (("2024.12.31", "2025.02.03"), ">=2024.0.0", "2025.02.03", False),  # leading zeros
        (("1.1.0", "1.2-beta.5"), ">=1.0.0-0", "1.2-beta.5", False),  # two dots, loosely read
        # "+" cannot be in a tag: Helm charts pushed as OCI artifacts carry "_" instead,
        # and an OCIRepository selecting the chart layer reads it back as "+"
        (("12.1.0", "12.02+build.1"), ">=12.0.0", "12.02_build.1", True),
    ],
)
def test_quirky_tags_are_picked_as_flux_picks_them(
    flux_cluster: Cluster,
    custom: Any,
    namespace: str,
    pusher: Pusher,
    versions: tuple[str, ...],
    semver: str,
    expected: str,
    chart: bool,
) -> None:
    """source-controller (Flux 2.7+) and the exporter's rule name the same tag."""
    repository = f"{namespace}/quirky"
    for version in versions:
        if chart:
            pusher.helm_chart(namespace, "quirky", version)
        else:
            pusher.flux_artifact(repository, version, files={"tag.txt": version.encode()})
    tags = tuple(v.replace("+", "_") for v in versions)
    flavor = Flavor.OCI_CHART if chart else Flavor.OCI
    assert compile_rule(TagRule(semver, None, flavor)).select(tags) == expected
    spec: dict[str, Any] = {
        "url": f"oci://{flux_cluster.registry}/{repository}",
        "ref": {"semver": semver},
        "interval": "1h",
        "insecure": True,
    }
    if chart:
        spec["layerSelector"] = {"mediaType": HELM_CHART_LAYER, "operation": "copy"}
    custom.create_namespaced_custom_object(SOURCE, "v1", namespace, "ocirepositories", {
        "apiVersion": f"{SOURCE}/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "quirky", "namespace": namespace},
        "spec": spec,
    })  # fmt: skip

    def applied() -> str:
        obj = custom.get_namespaced_custom_object(
            SOURCE, "v1", namespace, "ocirepositories", "quirky"
        )
        return revision(obj) or ""

    deadline = time.monotonic() + 90
    while not applied():
        assert time.monotonic() < deadline, "source-controller did not reconcile"
        time.sleep(0.2)
    assert applied().startswith(expected + "@")
