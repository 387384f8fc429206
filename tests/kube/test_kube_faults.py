"""API server faults, on a control plane of its own (these tests stop its API server).

What an HA control plane does to a client during a rolling restart: the API server it
watches goes away (connections refused), changes carry on through another API server on the
same etcd, and the restarted server's watch cache starts after them, so resuming the watch
from the last resourceVersion gets 410 Gone. The exporter must keep serving, count the
failures, list again, and end up with exactly the objects that exist: the deleted one gone,
the created one there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devenv.kubeapi import ControlPlane
from devenv.ports import free_port, wait_for_http
from tests.scrape import sample, samples, wait

pytestmark = pytest.mark.cluster

GROUP, VERSION = "source.toolkit.fluxcd.io", "v1"
NS = "faults"
OPTED_IN = {"oci-trigger.gitlab.com/enabled": "true"}


@contextmanager
def api_for(kubeconfig: Path) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


def create(api: Any, name: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OCIRepository",
        "metadata": {"name": name, "namespace": NS, "annotations": OPTED_IN},
        # nothing listens on port 9: every check fails fast as "unavailable"
        "spec": {"url": f"oci://127.0.0.1:9/apps/{name}", "interval": "1h", "insecure": True},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, NS, "ocirepositories", body
    )


def targets(base: str) -> set[str]:
    """Names of the OCIRepositories the exporter currently reports a state for."""
    states = [s for s in samples(base) if s.name == "flux_oci_target_state"]
    return {s.labels["name"] for s in states if s.value == 1}


def test_an_api_server_restart_is_survived_and_an_expired_watch_relists(
    plane: ControlPlane, tmp_path: Path
) -> None:
    with api_for(plane.kubeconfig) as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))
        )
        create(api, "kept")
        create(api, "deleted")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "exporter.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--log-format", "text",
             "--kubeconfig", str(plane.kubeconfig), "--listen", f"127.0.0.1:{port}",
             "--interval", "2s", "--tag-ttl", "2s"],
            env=dict(os.environ, FLUX_OCI_TRIGGER_MIN_INTERVAL="1s"),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_http(f"{base}/readyz", timeout=60, ok_codes=(200,))
            wait(lambda: targets(base) == {"kept", "deleted"}, what="both objects reported")
            lists = {"resource": "ocirepositories"}
            assert sample(base, "flux_oci_kube_lists_total", lists) == 1
            assert sample(base, "flux_oci_kube_api_errors_total", lists) == 0

            plane.stop_apiserver()
            wait(lambda: (sample(base, "flux_oci_kube_api_errors_total", lists) or 0) >= 1,
                 what="the refused watch to be counted")  # fmt: skip
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
                assert resp.status == 200  # the loop carries on with what it last saw
            assert targets(base) == {"kept", "deleted"}

            with plane.replica() as replica, api_for(replica) as other:  # HA: the other server
                client.CustomObjectsApi(other).delete_namespaced_custom_object(
                    GROUP, VERSION, NS, "ocirepositories", "deleted"
                )
                create(other, "created")
            plane.start_apiserver()

            wait(lambda: targets(base) == {"kept", "created"},
                 what="the relist to drop the deleted object and add the created one")  # fmt: skip
            # the live part of /metrics is rendered at most once a second
            wait(lambda: sample(base, "flux_oci_kube_lists_total", lists) == 2, timeout=5,
                 what="the relist counted")  # fmt: skip
            time.sleep(2)
            assert sample(base, "flux_oci_kube_lists_total", lists) == 2  # exactly one relist
            assert proc.poll() is None
            with api_for(plane.kubeconfig) as api:
                found = client.CoreV1Api(api).list_namespaced_event(NS).items
            warnings = [e.reason for e in found if e.involved_object.name == "kept"]
            assert warnings == ["RegistryCheckFailed"]  # once, not once per failed check
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    text = log_path.read_text()
    assert "ocirepositories in all namespaces failed" in text
    assert "expired (410); listing again" in text
