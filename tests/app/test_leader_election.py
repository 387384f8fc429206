"""Two replicas on a real Flux: one leads on a Lease, failover keeps every push applied and
never requests twice. kill -9 (the lease runs out), SIGTERM (released at once) and
SIGSTOP past the lease (the frozen leader sends nothing when it wakes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from devenv.cluster import Cluster
from devenv.exporter import ExporterProcess, exporter_process
from devenv.ocirepo import create_opted_in, wait_for_revision
from devenv.push import Pusher
from tests.scrape import sample, samples, wait

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
GROUP, VERSION = "source.toolkit.fluxcd.io", "v1"
NAMES = ("a", "b", "c")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


class Requests:
    """Every distinct requestedAt each object carried, read from a watch (no event lost)."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.seen: dict[str, list[str]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(kube, namespace), daemon=True)
        self._thread.start()

    def _run(self, kube: Any, namespace: str) -> None:
        custom = client.CustomObjectsApi(kube)
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        while not self._stop.is_set():
            events = stream.stream(  # type: ignore[no-untyped-call]
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "ocirepositories",
                timeout_seconds=5,
            )
            try:
                for event in events:
                    obj = event["object"]
                    token = (obj["metadata"].get("annotations") or {}).get(REQUESTED_AT)
                    name = obj["metadata"]["name"]
                    if token and token not in self.seen[name]:
                        self.seen[name].append(token)
                    if self._stop.is_set():
                        break
            finally:
                events.close()  # the stream's connection goes back, closed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def holder(kube: Any, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube).read_namespaced_lease("flux-oci-trigger", namespace)
    except client.ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None


def push_all(pusher: Pusher, namespace: str, tag: str) -> dict[str, str]:
    return {n: f"{tag}@{pusher.flux_artifact(f'{namespace}/{n}', tag).digest}" for n in NAMES}


def applied(kube: Any, namespace: str, revisions: dict[str, str]) -> None:
    for name, revision in revisions.items():
        wait_for_revision(kube, namespace, name, revision, 120)


@pytest.fixture
def replicas(flux_cluster: Cluster, namespace: str) -> Iterator[Any]:
    """``start(identity)`` -> a running replica; all stopped (SIGCONT first) at the end."""
    with ExitStack() as stack:
        started: list[ExporterProcess] = []

        def start(identity: str) -> ExporterProcess:
            flags = ("--leader-elect", "--leader-election-namespace", namespace,
                     "--namespace", namespace, "--interval", "2s", "--tag-ttl", "2s")  # fmt: skip
            log = flux_cluster.logs / f"replica-{namespace}-{identity}.log"
            proc = stack.enter_context(exporter_process(
                flux_cluster.kubeconfig, log, *flags, min_interval="1s",
                env={"POD_NAME": identity}, wait_path="/healthz"))  # fmt: skip
            started.append(proc)
            return proc

        try:
            yield start
        finally:
            for proc in started:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)


def log_of(flux_cluster: Cluster, namespace: str, identity: str) -> str:
    return (flux_cluster.logs / f"replica-{namespace}-{identity}.log").read_text()


def test_failover_keeps_every_push_applied_and_never_requests_twice(
    flux_cluster: Cluster, kube: Any, namespace: str, pusher: Pusher, replicas: Any
) -> None:
    for name in NAMES:
        pusher.flux_artifact(f"{namespace}/{name}", "1.0.0")
        create_opted_in(kube, namespace, name, f"oci://{flux_cluster.registry}/{namespace}/{name}",
                        ">=1.0.0")  # fmt: skip
    applied(kube, namespace, {n: "1.0.0@" for n in NAMES})
    requests = Requests(kube, namespace)
    try:
        procs = {"one": replicas("one"), "two": replicas("two")}
        wait(lambda: holder(kube, namespace) in procs, timeout=30, what="a leader")
        leader = holder(kube, namespace)
        assert leader is not None
        standby = next(i for i in procs if i != leader)
        wait(lambda: sample(procs[leader].url, "flux_oci_leader", {}) == 1, what="leader=1")
        assert sample(procs[standby].url, "flux_oci_leader", {}) == 0
        assert not [s for s in samples(procs[standby].url) if s.name.startswith("flux_oci_target")]

        applied(kube, namespace, push_all(pusher, namespace, "1.1.0"))

        # kill -9 the leader while artifacts are pushed: the lease has to run out
        os.kill(procs[leader].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        revisions = push_all(pusher, namespace, "1.2.0")
        wait(lambda: holder(kube, namespace) == standby, timeout=30, what="the standby to lead")
        took_over = time.monotonic() - killed_at
        assert took_over <= 20, took_over
        applied(kube, namespace, revisions)

        # SIGTERM: the leader releases the Lease, a fresh standby leads at once
        third = replicas("three")
        time.sleep(2)
        assert holder(kube, namespace) == standby
        os.kill(procs[standby].pid, signal.SIGTERM)
        terminated_at = time.monotonic()
        wait(lambda: holder(kube, namespace) == "three", timeout=15, what="three to lead")
        released = time.monotonic() - terminated_at
        assert released <= 3 + 2, released  # release, then one retry period
        applied(kube, namespace, push_all(pusher, namespace, "1.3.0"))

        # SIGSTOP past the lease: the standby takes over; the frozen one sends nothing
        replicas("four")
        time.sleep(2)
        os.kill(third.pid, signal.SIGSTOP)
        wait(lambda: holder(kube, namespace) == "four", timeout=30, what="four to lead")
        revisions = push_all(pusher, namespace, "1.4.0")
        applied(kube, namespace, revisions)
        os.kill(third.pid, signal.SIGCONT)
        wait(lambda: "stopped leading" in log_of(flux_cluster, namespace, "three"), timeout=10,
             what="three to notice it lost the lease")  # fmt: skip
        time.sleep(3)
        after_resume = log_of(flux_cluster, namespace, "three").split("stopped leading", 1)[1]
        assert "requested reconciliation" not in after_resume
    finally:
        requests.stop()
    # one request per object per new artifact (1.1.0 .. 1.4.0), across every failover
    assert {n: len(requests.seen[n]) for n in NAMES} == {n: 4 for n in NAMES}, requests.seen


def test_shards_split_the_objects_between_processes(
    flux_cluster: Cluster, kube: Any, namespace: str, pusher: Pusher, tmp_path: Path
) -> None:
    shards = {"s1": "sharding.fluxcd.io/key=s1", "s2": "sharding.fluxcd.io/key=s2",
              "default": "!sharding.fluxcd.io/key"}  # fmt: skip
    custom = client.CustomObjectsApi(kube)
    for i in range(30):
        key = ("s1", "s2", None)[i % 3]
        name = f"o{i:02d}"
        pusher.flux_artifact(f"{namespace}/{name}", "1.0.0")
        create_opted_in(kube, namespace, name, f"oci://{flux_cluster.registry}/{namespace}/{name}",
                        ">=1.0.0")  # fmt: skip
        if key:
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "ocirepositories",
                name, {"metadata": {"labels": {"sharding.fluxcd.io/key": key}}})  # fmt: skip
    applied(kube, namespace, {f"o{i:02d}": "1.0.0@" for i in range(30)})
    with ExitStack() as stack:
        procs = {}
        for shard, selector in shards.items():
            flags = ("--leader-elect", "--leader-election-namespace", namespace,
                     "--watch-label-selector", selector, "--namespace", namespace,
                     "--interval", "2s", "--tag-ttl", "2s")  # fmt: skip
            procs[shard] = stack.enter_context(exporter_process(
                flux_cluster.kubeconfig, tmp_path / f"{shard}.log", *flags, min_interval="1s",
                env={"POD_NAME": f"replica-{shard}"}))  # fmt: skip
        revisions = {}
        for i in range(30):
            pushed = pusher.flux_artifact(f"{namespace}/o{i:02d}", "1.1.0")
            revisions[f"o{i:02d}"] = f"1.1.0@{pushed.digest}"
        applied(kube, namespace, revisions)
        for shard, proc in procs.items():
            states = [s for s in samples(proc.url) if s.name == "flux_oci_target_state"]
            names = sorted(s.labels["name"] for s in states)
            index = {"s1": 0, "s2": 1, "default": 2}[shard]
            assert names == [f"o{i:02d}" for i in range(30) if i % 3 == index], shard
            sources = [s for s in samples(proc.url) if s.name == "flux_oci_sources"]
            assert {s.labels["shard"] for s in sources} == {shard}
            assert sum(s.value for s in sources) == 10
        leases = client.CoordinationV1Api(kube).list_namespaced_lease(namespace).items
        assert sorted(str(lease.metadata.name if lease.metadata else "") for lease in leases) == [
            "flux-oci-trigger-default", "flux-oci-trigger-s1", "flux-oci-trigger-s2"]  # fmt: skip
    requested = defaultdict(list)
    for shard in shards:
        for line in (tmp_path / f"{shard}.log").read_text().splitlines():
            if "requested reconciliation of OCIRepository" in line:
                requested[line.split(f"/{namespace}/", 1)[1].split(":", 1)[0]].append(shard)
    assert {n: len(s) for n, s in requested.items()} == {f"o{i:02d}": 1 for i in range(30)}
