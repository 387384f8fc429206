"""Failover time of two replicas electing a leader on a Lease (real kube-apiserver).

Two ``flux-oci-trigger run --leader-elect`` processes; each round stops the leader and
times until the Lease names the other one, then starts a fresh standby. ``kill -9``
leaves the Lease to run out (lease 15 s); SIGTERM releases it on the way out.

    .venv/bin/python benchmarks/bench_failover.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kubernetes import client, config

from devenv.exporter import ExporterProcess, exporter_process
from devenv.kubeapi import start_control_plane

NAMESPACE = "default"


def holder(api: Any) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease("flux-oci-trigger", NAMESPACE)
    except client.ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None


def until(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("timed out")
        time.sleep(0.05)
    return time.monotonic() - started


def rounds(kubeconfig: Path, api: Any, n: int, sig: signal.Signals) -> list[float]:
    found = []
    with ExitStack() as stack:
        procs: dict[str, ExporterProcess] = {}
        serial = 0

        def start() -> None:
            nonlocal serial
            serial += 1
            name = f"replica-{sig.name.lower()}-{serial}"
            procs[name] = stack.enter_context(exporter_process(
                kubeconfig, None, "--leader-elect", "--leader-election-namespace", NAMESPACE,
                env={"POD_NAME": name}, wait_path="/healthz"))  # fmt: skip

        start()
        start()
        until(lambda: holder(api) in procs, 60)
        for i in range(n):
            leader = holder(api)
            assert leader is not None
            stopped_at = time.monotonic()
            os.kill(procs.pop(leader).pid, sig)
            until(lambda leader=leader: holder(api) not in (None, leader), 60)
            found.append(time.monotonic() - stopped_at)
            print(f"{sig.name} round {i + 1:2d}: {found[-1]:5.2f}s", flush=True)
            start()
            time.sleep(2.5)  # the fresh standby has read the Lease once
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, start_control_plane(Path(tmp)) as plane:
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            for sig in (signal.SIGKILL, signal.SIGTERM):
                results[sig.name] = rounds(plane.kubeconfig, api, args.rounds, sig)
        finally:
            api.close()
    print("\nlease 15 s, renew deadline 10 s, retry 2 s")
    goals = {"SIGKILL": "<= 20 s", "SIGTERM": "<= 3 s"}
    for name, found in results.items():
        print(f"{name:8s} {len(found):2d} failovers: p50 {statistics.median(found):5.2f}s  "
              f"max {max(found):5.2f}s  goal {goals[name]}")  # fmt: skip


if __name__ == "__main__":
    main()
