"""flux-oci-trigger's loop driving the real source-controller (Flux intervals 1h: only our
request can explain a new revision being applied within seconds)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devenv.cluster import Cluster
from devenv.ocirepo import create_opted_in
from devenv.push import Pusher

pytestmark = pytest.mark.cluster
GROUP, VERSION = "source.toolkit.fluxcd.io", "v1"
ENABLED = {"oci-trigger.gitlab.com/enabled": "true"}


def sample(base: str, name: str, labels: dict[str, str]) -> float | None:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def revision(custom: Any, ns: str, plural: str, name: str) -> str:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    return str(((obj.get("status") or {}).get("artifact") or {}).get("revision", ""))


def wait(predicate: Any, timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_semver_bump_is_applied_by_flux_after_our_request(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    repo = f"{namespace}/app"
    pusher.flux_artifact(repo, "v1.0.0")
    create_opted_in(kube, namespace, "app", f"oci://{flux_cluster.registry}/{repo}", ">=1.0.0")
    wait(lambda: revision(custom, namespace, "ocirepositories", "app").startswith("v1.0.0@"),
         what="Flux to apply v1.0.0")  # fmt: skip
    ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="the exporter to see it up to date")  # fmt: skip
    pushed = pusher.flux_artifact(repo, "v1.1.0")
    wait(lambda: revision(custom, namespace, "ocirepositories", "app") == f"v1.1.0@{pushed.digest}",
         what="Flux to apply v1.1.0")  # fmt: skip
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="up to date again")  # fmt: skip
    assert sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1
    histogram = "flux_oci_request_to_applied_seconds_count"
    wait(lambda: (sample(exporter, histogram, {"kind": "OCIRepository"}) or 0) >= 1,
         what="request->applied")  # fmt: skip
    assert sample(exporter, "flux_oci_target_lag_seconds", ids) == 0


def test_helm_chart_range_is_applied_by_flux_after_our_request(
    flux_cluster: Cluster, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    pusher.helm_chart(f"{namespace}/charts", "web", "0.1.0")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "helmrepositories", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": namespace, "annotations": ENABLED},
        "spec": {"type": "oci", "url": f"oci://{flux_cluster.registry}/{namespace}/charts",
                 "insecure": True, "interval": "1h"},
    })  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "helmcharts", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "HelmChart",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"chart": "web", "version": ">=0.1.0", "interval": "1h",
                 "sourceRef": {"kind": "HelmRepository", "name": "charts"}},
    })  # fmt: skip
    wait(lambda: revision(custom, namespace, "helmcharts", "web") == "0.1.0", what="chart 0.1.0")
    pusher.helm_chart(f"{namespace}/charts", "web", "0.2.0")
    wait(lambda: revision(custom, namespace, "helmcharts", "web") == "0.2.0", what="chart 0.2.0")
    ids = {"kind": "HelmChart", "namespace": namespace, "name": "web"}
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="the chart up to date")  # fmt: skip
    assert sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1
    repo = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "helmrepositories", "charts"
    )
    assert "reconcile.fluxcd.io/requestedAt" not in (repo["metadata"].get("annotations") or {})


def test_a_target_flux_cannot_pull_turns_stuck_with_an_event(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    repo = f"{namespace}/app"
    pusher.flux_artifact(repo, "v1.0.0")
    create_opted_in(kube, namespace, "app", f"oci://{flux_cluster.registry}/{repo}", ">=1.0.0")
    wait(lambda: revision(custom, namespace, "ocirepositories", "app").startswith("v1.0.0@"),
         what="Flux to apply v1.0.0")  # fmt: skip
    broken = pusher.flux_artifact(repo, "v2.0.0", files={"only-here.yaml": namespace.encode()})
    get = urllib.request.Request(
        f"{flux_cluster.registry_url}/v2/{repo}/manifests/{broken.digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(get) as resp:
        manifest = json.loads(resp.read())
    layer = manifest["layers"][0]["digest"]
    delete = urllib.request.Request(f"{flux_cluster.registry_url}/v2/{repo}/blobs/{layer}",
                                    method="DELETE")  # fmt: skip
    with urllib.request.urlopen(delete) as resp:
        assert resp.status == 202  # the tag still lists; its content is gone
    ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "stuck"}) == 1,
         what="the target to turn stuck")  # fmt: skip
    assert revision(custom, namespace, "ocirepositories", "app").startswith("v1.0.0@")
    assert sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1  # backoff: 1 min
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    reasons = [e.reason for e in events if e.source and e.source.component == "flux-oci-trigger"]
    assert reasons == ["NewArtifact", "ReconcileStuck"]
