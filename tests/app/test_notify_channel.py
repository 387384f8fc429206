"""The notify channel on a real API server (no Flux controllers needed): what existed
before the exporter started is not replayed, a new notification is handled once, a
malformed one is counted as invalid, and other Events are never seen."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devenv.kubeapi import ControlPlane
from devenv.ports import free_port, wait_for_http
from exporter.core.notify import event_body, parse_ref
from tests.scrape import sample, wait

pytestmark = pytest.mark.cluster
NS = "notes"
REF = parse_ref("127.0.0.1:9/apps/app:1.2.0")  # nothing listens on port 9


def post(api: Any, body: dict[str, Any]) -> None:
    events: Any = client.EventsV1Api(api)
    events.create_namespaced_event(NS, body)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def received(base: str, result: str) -> float:
    return sample(base, "flux_oci_events_received_total",
                  {"source": "kubernetes", "result": result}) or 0.0  # fmt: skip


def test_notifications_are_handled_once_and_never_replayed(
    plane: ControlPlane, tmp_path: Path
) -> None:
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))
        )
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "source.toolkit.fluxcd.io", "v1", NS, "ocirepositories",
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
             "metadata": {"name": "app", "namespace": NS,
                          "annotations": {"oci-trigger.gitlab.com/enabled": "true"}},
             "spec": {"url": f"oci://{REF.repository}", "interval": "1h", "insecure": True,
                      "ref": {"semver": ">=1.0.0"}}},
        )  # fmt: skip
        for _ in range(3):  # before the exporter starts: history, not news
            post(api, event_body(REF, NS, now(), "ci-job-1"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = tmp_path / "exporter.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "run", "--log-format", "json",
                 "--kubeconfig", str(plane.kubeconfig), "--listen", f"127.0.0.1:{port}",
                 "--interval", "1h", "--tag-ttl", "1h"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                wait_for_http(f"{base}/readyz", timeout=60, ok_codes=(200,))
                wait(lambda: sample(base, "flux_oci_kube_lists_total", {"resource": "events"})
                     == 1, what="the notifications listed")  # fmt: skip
                time.sleep(1.5)
                assert sum(received(base, r) for r in ("accepted", "ignored", "invalid")) == 0

                post(api, event_body(REF, NS, now(), "ci-job-2"))
                wait(lambda: received(base, "accepted") == 1, timeout=10,
                     what="the new notification handled")  # fmt: skip
                broken = event_body(REF, NS, now(), "ci-job-3")
                broken["note"] = "not a reference"
                post(api, broken)
                other = event_body(REF, NS, now(), "ci-job-4")
                other["reason"] = "Pulled"  # someone else's Event: never reaches us
                post(api, other)
                wait(lambda: received(base, "invalid") == 1, timeout=10,
                     what="the malformed notification counted")  # fmt: skip
                time.sleep(1.5)
                assert received(base, "accepted") == 1
                assert received(base, "ignored") == 0
                assert proc.poll() is None
            finally:
                proc.terminate()
                proc.wait(timeout=15)
    finally:
        api.close()
    text = log_path.read_text()
    assert "Traceback" not in text
    assert "notification from notes: 127.0.0.1:9/apps/app:1.2.0" in text
