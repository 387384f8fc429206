"""An OCI HelmRepository is static; the HelmChart helm-controller generates for a HelmRelease
is what source-controller resolves, and what a reconcile request must target. helm-controller
then installs (and upgrades) the release: the chart holds only a ConfigMap, so no kubelet is
needed for it to become Ready.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from devenv.cluster import Cluster
from devenv.push import Pusher
from tests.fixtures.flux import HELM, SOURCE, is_ready, request_reconcile, revision, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]


def _installed_version(obj: dict[str, Any]) -> str | None:
    history = obj.get("status", {}).get("history") or []
    return str(history[0]["chartVersion"]) if history else None


def test_requested_helmchart_reconcile_upgrades_the_release(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher
) -> None:
    charts = f"{namespace}/charts"
    pusher.helm_chart(charts, "demo", "0.1.0")
    pusher.helm_chart(charts, "demo", "0.3.0-rc.1")  # a prerelease: outside ">=0.1.0"
    custom.create_namespaced_custom_object(SOURCE, "v1", namespace, "helmrepositories", {
        "apiVersion": f"{SOURCE}/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": namespace},
        "spec": {"type": "oci", "url": f"oci://{flux_cluster.registry}/{charts}",
                 "insecure": True, "interval": "1h"},
    })  # fmt: skip
    custom.create_namespaced_custom_object(HELM, "v2", namespace, "helmreleases", {
        "apiVersion": f"{HELM}/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "demo", "namespace": namespace},
        "spec": {
            "interval": "1h",
            "chart": {"spec": {
                "chart": "demo",
                "version": ">=0.1.0",
                "interval": "1h",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            }},
        },
    })  # fmt: skip
    chart_name = f"{namespace}-demo"

    def chart() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            SOURCE, "v1", namespace, "helmcharts", chart_name
        )
        return obj

    def release() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            HELM, "v2", namespace, "helmreleases", "demo"
        )
        return obj

    wait_for(chart, lambda o: is_ready(o) and revision(o) == "0.1.0", "chart 0.1.0",
             flux_cluster.logs)  # fmt: skip
    wait_for(release, lambda o: is_ready(o) and _installed_version(o) == "0.1.0",
             "release 0.1.0 installed", flux_cluster.logs)  # fmt: skip
    helmrepo = custom.get_namespaced_custom_object(
        SOURCE, "v1", namespace, "helmrepositories", "charts"
    )
    assert not helmrepo.get("status", {}).get("artifact")  # static since Flux 2.2
    core = client.CoreV1Api(kube)
    assert core.read_namespaced_config_map("demo-cm", namespace).data == {"chartVersion": "0.1.0"}

    pusher.helm_chart(charts, "demo", "0.2.0")
    started = time.monotonic()
    token = request_reconcile(custom, "helmcharts", namespace, chart_name)
    wait_for(
        chart,
        lambda o: o["status"].get("lastHandledReconcileAt") == token and revision(o) == "0.2.0",
        "chart 0.2.0", flux_cluster.logs,
    )  # fmt: skip
    fetched = time.monotonic() - started
    wait_for(release, lambda o: is_ready(o) and _installed_version(o) == "0.2.0",
             "release upgraded to 0.2.0", flux_cluster.logs)  # fmt: skip
    upgraded = time.monotonic() - started
    print(f"\nHelmChart: requestedAt -> chart 0.2.0 in {fetched:.2f}s, release upgraded in "
          f"{upgraded:.2f}s")  # fmt: skip
    assert core.read_namespaced_config_map("demo-cm", namespace).data == {"chartVersion": "0.2.0"}
