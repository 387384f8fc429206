"""Our Events through Flux's own alerting: the real notification-controller receives the
exporter's ``ReconcileRequested`` on ``--events-addr``, matches it against an ``Alert``
on ``OCIRepository`` ``*`` and forwards it with a ``generic`` Provider to a receiver on
loopback, as it does source-controller's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from devenv.cluster import Cluster
from devenv.exporter import exporter_process
from devenv.ocirepo import wait_for_revision
from devenv.push import Pusher
from tests.scrape import sample, wait

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
NOTIFICATION = ("notification.toolkit.fluxcd.io", "v1beta3")
SOURCE = ("source.toolkit.fluxcd.io", "v1")
POD = "flux-oci-trigger-5c9d7-x2x8q"


class Received:
    """What the generic Provider posted: (headers, lower-cased, and body) per request."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()

    def ours(self, reason: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        with self.lock:
            return [
                (h, b)
                for h, b in self.posts
                if b.get("reportingController") == "flux-oci-trigger" and b.get("reason") == reason
            ]


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with received.lock:
                received.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_reconcile_request_reaches_a_flux_alerts_provider(
    flux_cluster: Cluster,
    notification_controller: str,
    kube: Any,
    custom: Any,
    namespace: str,
    pusher: Pusher,
    receiver: tuple[str, Received],
) -> None:
    address, received = receiver
    custom.create_namespaced_custom_object(*NOTIFICATION, namespace, "providers", {
        "apiVersion": "/".join(NOTIFICATION), "kind": "Provider",
        "metadata": {"name": "receiver", "namespace": namespace},
        "spec": {"type": "generic", "address": address},
    })  # fmt: skip
    custom.create_namespaced_custom_object(*NOTIFICATION, namespace, "alerts", {
        "apiVersion": "/".join(NOTIFICATION), "kind": "Alert",
        "metadata": {"name": "sources", "namespace": namespace},
        "spec": {"providerRef": {"name": "receiver"}, "eventSeverity": "info",
                 "eventSources": [{"kind": "OCIRepository", "name": "*"}]},
    })  # fmt: skip
    repo = f"{namespace}/app"
    pusher.flux_artifact(repo, "v1.0.0")
    custom.create_namespaced_custom_object(*SOURCE, namespace, "ocirepositories", {
        "apiVersion": "/".join(SOURCE), "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": namespace,
                     "annotations": {"oci-trigger.gitlab.com/enabled": "true",
                                     "event.toolkit.fluxcd.io/cluster": "local"}},
        "spec": {"url": f"oci://{flux_cluster.registry}/{repo}", "interval": "1h",
                 "ref": {"semver": ">=1.0.0"}, "insecure": True},
    })  # fmt: skip
    wait_for_revision(kube, namespace, "app", "v1.0.0@", 120)

    flags = ("--interval", "2s", "--tag-ttl", "2s", "--namespace", namespace,
             "--events-addr", notification_controller)  # fmt: skip
    log = flux_cluster.logs / f"flux-oci-trigger-alerts-{namespace}.log"
    with exporter_process(flux_cluster.kubeconfig, log, *flags, min_interval="1s",
                          env={"POD_NAME": POD}) as exporter:  # fmt: skip
        ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
        wait(lambda: sample(exporter.url, "flux_oci_target_state", {**ids, "state": "up_to_date"})
             == 1, what="up to date before the push")  # fmt: skip
        pushed = pusher.flux_artifact(repo, "v1.1.0")
        revision = f"v1.1.0@{pushed.digest}"
        wait(lambda: received.ours("ReconcileRequested"), timeout=60,
             what="ReconcileRequested through notification-controller")  # fmt: skip
        wait(lambda: sample(exporter.url, "flux_oci_flux_events_total", {"result": "sent"}),
             timeout=5, what="the event counted as sent")  # fmt: skip
        assert sample(exporter.url, "flux_oci_flux_events_total", {"result": "failed"}) == 0
    wait_for_revision(kube, namespace, "app", revision, 120)

    ((headers, body),) = received.ours("ReconcileRequested")
    assert headers["gotk-component"] == "flux-oci-trigger"  # the generic Provider's header
    involved = body["involvedObject"]
    assert (involved["kind"], involved["namespace"], involved["name"]) == (
        "OCIRepository", namespace, "app",
    )  # fmt: skip
    assert involved["apiVersion"] == "source.toolkit.fluxcd.io/v1" and involved["uid"]
    assert body["severity"] == "info"
    assert revision in body["message"]
    # notification-controller strips the groups: <group>/revision and the forwarded annotation
    assert body["metadata"] == {"revision": revision, "cluster": "local"}
    assert body["reportingInstance"] == POD

    # the Event on the object: the same replica and metadata
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    (event,) = [e for e in events if e.reason == "ReconcileRequested"]
    assert event.reporting_instance == POD and event.reporting_component == "flux-oci-trigger"
    assert event.metadata.annotations == {
        "source.toolkit.fluxcd.io/revision": revision,
        "event.toolkit.fluxcd.io/cluster": "local",
    }
