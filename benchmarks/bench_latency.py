"""Push -> request and push -> applied on a real local Flux: polling against events.

The OCIRepository's own interval is 1h, so nothing but the exporter's request can make
source-controller apply a new tag soon. Two phases in one run, each on its own
OCIRepository, with the exporter's default polling (interval 1m, tag TTL 60s):

- ``polling``: the exporter only polls;
- ``events``: the registry (distribution v3) sends push notifications to the exporter's
  events listener as well;
- ``notify``: polling slowed to 10 minutes and no events listener; after each push,
  ``flux-oci-trigger notify`` creates its Event through the API server (timed from the
  command's exit, and the command's own wall time).

Each round pushes a new patch version and times until the exporter's request is on the
object (``requested-revision``) and until ``status.artifact.revision`` names it.

    .venv/bin/python benchmarks/bench_latency.py [--pushes 20] [--polling-pushes 8]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from devenv.cluster import Cluster
from devenv.exporter import exporter_process
from devenv.ocirepo import (
    GROUP,
    PLURAL,
    VERSION,
    create_namespace,
    create_opted_in,
    wait_for_revision,
)
from devenv.ports import free_port
from devenv.push import Pusher

NS = "bench"
REQUESTED = "oci-trigger.gitlab.com/requested-revision"


def requested(api: Any, name: str) -> str:
    obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, name
    )
    return str((obj["metadata"].get("annotations") or {}).get(REQUESTED, ""))


def until_requested(api: Any, name: str, target: str, since: float, poll: float) -> float:
    """Seconds from ``since`` until the exporter's request for ``target`` is on the object."""
    while requested(api, name) != target:
        if time.monotonic() - since > 300:
            raise TimeoutError(f"no request for {target} within 300s")
        time.sleep(poll)
    return time.monotonic() - since


def rounds(
    cluster: Cluster, api: Any, name: str, pushes: int, spacing: float = 0.0
) -> list[tuple[float, float]]:
    """(push -> request, push -> applied) for ``pushes`` new patch versions, ``spacing``
    seconds apart at least (pushes closer than the exporter's event gap, 2 s, to one
    repository are coalesced into one refresh at the end of the gap, by design)."""
    found = []
    with Pusher(cluster.registry_url) as push:
        for i in range(1, pushes + 1):
            if i > 1:
                time.sleep(spacing)
            tag = f"1.0.{i}"
            started = time.monotonic()
            pushed = push.flux_artifact(f"{NS}/{name}", tag)
            target = f"{tag}@{pushed.digest}"
            to_request = until_requested(api, name, target, started, poll=0.05)
            wait_for_revision(api, NS, name, target, 300)
            to_applied = time.monotonic() - started
            found.append((to_request, to_applied))
            print(f"{name} push {i:2d}: request after {to_request:5.2f}s, "
                  f"applied after {to_applied:5.2f}s", flush=True)  # fmt: skip
    return found


def notify_rounds(
    cluster: Cluster, api: Any, name: str, pushes: int, spacing: float = 2.5
) -> list[tuple[float, float, float]]:
    """(notify's wall time, its exit -> request, its exit -> applied) per push: the CI job
    pushes, then runs ``flux-oci-trigger notify`` against the API server."""
    found = []
    with Pusher(cluster.registry_url) as push:
        for i in range(1, pushes + 1):
            if i > 1:
                time.sleep(spacing)
            tag = f"1.0.{i}"
            pushed = push.flux_artifact(f"{NS}/{name}", tag)
            target = f"{tag}@{pushed.digest}"
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "exporter", "notify", "--kubeconfig",
                 str(cluster.kubeconfig), "-n", NS, f"{cluster.registry}/{NS}/{name}:{tag}"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            exited = time.monotonic()
            to_request = until_requested(api, name, target, exited, poll=0.02)
            wait_for_revision(api, NS, name, target, 300)
            to_applied = time.monotonic() - exited
            found.append((exited - started, to_request, to_applied))
            ran = exited - started
            print(f"{name} push {i:2d}: notify ran {ran:4.2f}s, request {to_request:5.2f}s "
                  f"after, applied {to_applied:5.2f}s after", flush=True)  # fmt: skip
    return found


def quantiles(values: list[float]) -> str:
    if not values:
        return "(no pushes)"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):6.2f}s  p99 {p99:6.2f}s  max {ordered[-1]:6.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pushes", type=int, default=20, help="rounds with events")
    parser.add_argument("--polling-pushes", type=int, default=8, help="rounds polling only")
    parser.add_argument("--phases", default="polling,events,notify",
                        help="comma-separated subset of polling, events, notify")  # fmt: skip
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    port = free_port()
    token = "Bearer " + secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(
            Path(tmp) / "cluster",
            notify=f"http://127.0.0.1:{port}/hooks/distribution",
            notify_headers={"Authorization": token},
        )
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        results: dict[str, list[tuple[float, float]]] = {}
        try:
            create_namespace(api, NS)
            for name in ("polling", "events", "notify"):
                with Pusher(cluster.registry_url) as push:
                    first = push.flux_artifact(f"{NS}/{name}", "1.0.0")
                url = f"oci://{cluster.registry}/{NS}/{name}"
                create_opted_in(api, NS, name, url, ">=1.0.0")
                wait_for_revision(api, NS, name, f"1.0.0@{first.digest}", 120)
            if "polling" in phases:  # the notifications reach a closed port and are dropped
                with exporter_process(cluster.kubeconfig, None, "--namespace", NS):
                    results["polling"] = rounds(cluster, api, "polling", args.polling_pushes)
            events = ("--namespace", NS, "--events-listen", f"127.0.0.1:{port}")
            env = {"FLUX_OCI_TRIGGER_DISTRIBUTION_SECRET": token}
            if "events" in phases:
                with exporter_process(cluster.kubeconfig, None, *events, env=env):
                    results["events"] = rounds(cluster, api, "events", args.pushes, spacing=2.5)
            # notify only: polling slowed to 10 minutes, no events listener
            slow = ("--namespace", NS, "--interval", "10m", "--tag-ttl", "10m")
            notified: list[tuple[float, float, float]] = []
            if "notify" in phases:
                with exporter_process(cluster.kubeconfig, None, *slow):
                    notified = notify_rounds(cluster, api, "notify", args.pushes)
        finally:
            api.close()
            cluster.stop()
    print(
        "\ndefaults: interval 1m, tag TTL 60s; Flux's own interval 1h; "
        "event pushes 2.5 s apart (beyond the 2 s event gap)"
    )
    for name, found in results.items():
        print(f"{name:8s} ({len(found):2d} pushes)  push -> request  "
              f"{quantiles([r for r, _ in found])}")  # fmt: skip
        print(f"{'':8s}               push -> applied  {quantiles([a for _, a in found])}")
    print(
        f"{'notify':8s} ({len(notified):2d} pushes)  exit -> request  "
        f"{quantiles([r for _, r, _ in notified])}  (interval 10m, tag TTL 10m, no listener)"
    )
    print(f"{'':8s}               exit -> applied  {quantiles([a for _, _, a in notified])}")
    print(f"{'':8s}               notify wall time {quantiles([w for w, _, _ in notified])}")


if __name__ == "__main__":
    main()
