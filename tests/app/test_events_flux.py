"""The instant path on a real Flux: distribution v3 notifies the exporter's events
listener, the exporter requests, source-controller applies. Polling is slowed to an hour
so only the event can explain a fast request; a wrong token is refused and counted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devenv.cluster import Cluster
from devenv.exporter import exporter_process
from devenv.ocirepo import create_opted_in, wait_for_revision
from devenv.ports import free_port
from devenv.push import Pusher
from devenv.registry import start_registry
from tests.fixtures.flux import annotations_of
from tests.scrape import sample, samples, wait

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
TOKEN = "Bearer events-SECRET"
REQUESTED = "oci-trigger.gitlab.com/requested-revision"


def test_a_pushed_artifact_is_requested_within_a_second_of_the_notification(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, tmp_path: Path
) -> None:
    events_port = free_port()
    with start_registry(
        tmp_path / "registry",
        implementation="v3",
        notifications_url=f"http://127.0.0.1:{events_port}/hooks/distribution",
        notification_headers={"Authorization": TOKEN},
    ) as registry, Pusher(registry.base_url) as push:  # fmt: skip
        repo = f"{namespace}/app"
        push.flux_artifact(repo, "v1.0.0")
        create_opted_in(kube, namespace, "app", f"oci://{registry.host}/{repo}", ">=1.0.0")
        wait_for_revision(kube, namespace, "app", "v1.0.0@", 120)
        flags = ("--interval", "1h", "--tag-ttl", "1h",
                 "--events-listen", f"127.0.0.1:{events_port}")  # fmt: skip
        log = flux_cluster.logs / f"flux-oci-trigger-events-{namespace}.log"
        env = {"FLUX_OCI_TRIGGER_DISTRIBUTION_SECRET": TOKEN}
        with exporter_process(flux_cluster.kubeconfig, log, *flags, env=env) as exporter:
            base = exporter.url
            ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
            wait(lambda: sample(base, "flux_oci_target_state", {**ids, "state": "up_to_date"})
                 == 1, what="up to date before the push")  # fmt: skip
            pushed_at = time.monotonic()
            pushed = push.flux_artifact(repo, "v1.1.0")
            target = f"v1.1.0@{pushed.digest}"
            wait(lambda: annotations_of(custom, namespace, "app").get(REQUESTED) == target,
                 timeout=10, what="the request after the notification")  # fmt: skip
            requested_after = time.monotonic() - pushed_at
            assert requested_after < 3.0, requested_after  # polling would take an hour
            wait_for_revision(kube, namespace, "app", target, 120)
            accepted = {"source": "distribution", "result": "accepted"}
            wait(lambda: (sample(base, "flux_oci_events_received_total", accepted) or 0) >= 1
                 and (sample(base, "flux_oci_event_to_request_seconds_count", {}) or 0) >= 1,
                 timeout=5, what="the event and its request counted")  # fmt: skip

            # a wrong token: a bare 401, counted, and nothing listed for it
            def registry_requests() -> float:
                return sum(s.value for s in samples(base)
                           if s.name == "flux_oci_registry_requests_total"
                           and s.labels.get("registry") == registry.host)  # fmt: skip

            before = registry_requests()
            forged = {"events": [{"action": "push", "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": repo, "tag": "v9.9.9", "digest": pushed.digest}}]}  # fmt: skip
            request = urllib.request.Request(
                f"http://127.0.0.1:{events_port}/hooks/distribution",
                data=json.dumps(forged).encode(), method="POST",
                headers={"Authorization": "Bearer wrong",
                         "Content-Type": "application/vnd.docker.distribution.events.v2+json"},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401
            refused.value.close()
            unauthorized = {"source": "distribution", "result": "unauthorized"}
            wait(lambda: sample(base, "flux_oci_events_received_total", unauthorized) == 1,
                 timeout=5, what="the refused event counted")  # fmt: skip
            time.sleep(1.5)
            assert registry_requests() == before  # a refused event costs the registry nothing
