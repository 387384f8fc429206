"""flux-oci-trigger's loop driving the real source-controller (Flux intervals 1h: only our
request can explain a new revision being applied within seconds)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from devenv.cluster import Cluster
from devenv.ocirepo import create_opted_in
from devenv.push import Pusher
from exporter.web.endpoints import LIVE_TTL
from tests.fixtures.flux import annotations_of
from tests.fixtures.flux_cluster import running_exporter
from tests.scrape import sample, wait

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
GROUP, VERSION = "source.toolkit.fluxcd.io", "v1"
ENABLED = {"oci-trigger.gitlab.com/enabled": "true"}
REQUESTED = "oci-trigger.gitlab.com/requested-revision"


def revision(custom: Any, ns: str, plural: str, name: str) -> str:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    return str(((obj.get("status") or {}).get("artifact") or {}).get("revision", ""))


def unpullable(cluster: Cluster, pusher: Pusher, repo: str, tag: str) -> None:
    """Push ``tag``, then delete its layer blob: the tag still lists, its content is gone,
    so Flux handles a request for it and fails."""
    broken = pusher.flux_artifact(repo, tag, files={"only-here.yaml": repo.encode()})
    get = urllib.request.Request(
        f"{cluster.registry_url}/v2/{repo}/manifests/{broken.digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(get) as resp:
        manifest = json.loads(resp.read())
    layer = manifest["layers"][0]["digest"]
    delete = urllib.request.Request(f"{cluster.registry_url}/v2/{repo}/blobs/{layer}",
                                    method="DELETE")  # fmt: skip
    with urllib.request.urlopen(delete) as resp:
        assert resp.status == 202


def applied_v1(cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher) -> str:
    """``<namespace>/app`` with v1.0.0 pushed, OCIRepository ``app`` (semver >=1.0.0,
    opted in) created and v1.0.0 applied by Flux; returns the repository path."""
    repo = f"{namespace}/app"
    pusher.flux_artifact(repo, "v1.0.0")
    create_opted_in(kube, namespace, "app", f"oci://{cluster.registry}/{repo}", ">=1.0.0")
    wait(lambda: revision(custom, namespace, "ocirepositories", "app").startswith("v1.0.0@"),
         what="Flux to apply v1.0.0")  # fmt: skip
    return repo


def test_semver_bump_is_applied_by_flux_after_our_request(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    repo = applied_v1(flux_cluster, kube, custom, namespace, pusher)
    ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="the exporter to see it up to date")  # fmt: skip
    kind = {"kind": "OCIRepository"}
    # v1.0.0's own lead time may be recorded: the exporter saw it before Flux's first apply.
    # The histograms are in the part of /metrics reused for LIVE_TTL: wait that out, so
    # the counts read below already hold what the up-to-date state above implies.
    time.sleep(LIVE_TTL + 0.2)
    before = {stage: (sample(exporter, f"flux_oci_{stage}_to_applied_seconds_count", kind) or 0,
                      sample(exporter, f"flux_oci_{stage}_to_applied_seconds_sum", kind) or 0)
              for stage in ("request", "artifact")}  # fmt: skip
    pushed = pusher.flux_artifact(repo, "v1.1.0")
    wait(lambda: revision(custom, namespace, "ocirepositories", "app") == f"v1.1.0@{pushed.digest}",
         what="Flux to apply v1.1.0")  # fmt: skip
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="up to date again")  # fmt: skip
    # the exposition is rendered off the scrape path: up to a second behind
    wait(lambda: sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1, timeout=5,
         what="one request counted")  # fmt: skip
    for stage, (count, total) in before.items():  # request->applied, first seen->applied
        histogram = f"flux_oci_{stage}_to_applied_seconds"
        try:
            wait(lambda: sample(exporter, f"{histogram}_count", kind) == count + 1,  # noqa: B023
                 what=histogram)  # fmt: skip
        except AssertionError:
            found = sample(exporter, f"{histogram}_count", kind)
            raise AssertionError(f"{histogram}_count is {found}, not {count} + 1") from None
        # whole seconds at both ends (created annotation, lastUpdateTime): 0 happens
        assert 0 <= (sample(exporter, f"{histogram}_sum", kind) or 0) - total < 60
    wait(lambda: sample(exporter, "flux_oci_target_lag_seconds", ids) == 0, timeout=10,
         what="no lag once applied")  # fmt: skip


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
    # the exposition is rendered off the scrape path: up to a second behind
    wait(lambda: sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1, timeout=5,
         what="one request counted")  # fmt: skip
    repo = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "helmrepositories", "charts"
    )
    assert "reconcile.fluxcd.io/requestedAt" not in (repo["metadata"].get("annotations") or {})


def test_a_target_flux_cannot_pull_turns_stuck_with_an_event(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    repo = applied_v1(flux_cluster, kube, custom, namespace, pusher)
    unpullable(flux_cluster, pusher, repo, "v2.0.0")
    ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "stuck"}) == 1,
         what="the target to turn stuck")  # fmt: skip
    assert revision(custom, namespace, "ocirepositories", "app").startswith("v1.0.0@")
    assert sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1  # backoff: 1 min
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    reasons = [e.reason for e in events if e.source and e.source.component == "flux-oci-trigger"]
    assert reasons == ["ReconcileRequested", "ReconcileStuck"]


def test_a_moved_mutable_tag_is_applied_by_flux_after_our_request(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    repo = f"{namespace}/app"
    first = pusher.flux_artifact(repo, "latest", files={"app.yaml": b"version: 1\n"})
    create_opted_in(kube, namespace, "app", f"oci://{flux_cluster.registry}/{repo}", tag="latest")
    wait(lambda: revision(custom, namespace, "ocirepositories", "app") == f"latest@{first.digest}",
         what="Flux to apply the first latest")  # fmt: skip
    ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="the exporter to see it up to date")  # fmt: skip
    moved = pusher.flux_artifact(repo, "latest", files={"app.yaml": b"version: 2\n"})
    assert moved.digest != first.digest
    wait(lambda: revision(custom, namespace, "ocirepositories", "app") == f"latest@{moved.digest}",
         what="Flux to apply the moved tag")  # fmt: skip
    wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
         what="up to date again")  # fmt: skip
    # the exposition is rendered off the scrape path: up to a second behind
    wait(lambda: sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1, timeout=5,
         what="one request counted")  # fmt: skip
    assert annotations_of(custom, namespace, "app")[REQUESTED] == f"latest@{moved.digest}"


def test_a_restarted_exporter_does_not_repeat_a_request_and_catches_up(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher
) -> None:
    """Three processes in turn, no memory shared but the object's annotations: the second
    finds a request Flux handled without applying (stuck) and must not send it again before
    the back-off; the third finds an artifact pushed while nothing ran and requests it once."""
    repo = applied_v1(flux_cluster, kube, custom, namespace, pusher)
    ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
    stuck = {**ids, "state": "stuck"}
    with running_exporter(flux_cluster) as first:
        unpullable(flux_cluster, pusher, repo, "v2.0.0")
        wait(lambda: sample(first, "flux_oci_target_state", stuck) == 1, what="stuck")
        assert sample(first, "flux_oci_reconcile_requests_total", ids) == 1
    before = annotations_of(custom, namespace, "app")

    with running_exporter(flux_cluster) as second:
        wait(lambda: sample(second, "flux_oci_target_state", stuck) == 1,
             what="the new process to find the request stuck")  # fmt: skip
        time.sleep(5)  # a few more passes (interval 2 s)
        assert sample(second, "flux_oci_reconcile_requests_total", ids) in (0, None)
    assert annotations_of(custom, namespace, "app") == before

    pushed = pusher.flux_artifact(repo, "v3.0.0")  # while no exporter runs
    with running_exporter(flux_cluster) as third:
        wait(lambda: revision(custom, namespace, "ocirepositories", "app")
             == f"v3.0.0@{pushed.digest}", what="Flux to apply v3.0.0")  # fmt: skip
        wait(lambda: sample(third, "flux_oci_target_state", {**ids, "state": "up_to_date"}) == 1,
             what="up to date")  # fmt: skip
        time.sleep(2)  # the exposition catches up with the last check
        # source-controller retries the failed v2.0.0 on its own back-off and may find
        # v3.0.0 before the exporter asks: then there is nothing to ask. Never twice.
        requests = sample(third, "flux_oci_reconcile_requests_total", ids)
        assert requests in (None, 1)
    if requests == 1:
        assert annotations_of(custom, namespace, "app")[REQUESTED] == f"v3.0.0@{pushed.digest}"
