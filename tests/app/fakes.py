"""Fakes at the engine's seams: a registry lister, access, patcher and event sink.

They record what they were asked and can be told to hang, fail or rate-limit, so the
engine's orchestration is tested in process in milliseconds; the real registry and API
server are exercised by the tests marked registry and cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from exporter.app.config import EngineConfig
from exporter.app.engine import Engine
from exporter.app.workers import HostWorkers
from exporter.core.backoff import Backoff
from exporter.flux.policy import TagParsing
from exporter.kube.access import AccessRefs, RegistryAccess
from exporter.kube.discovery import Resource
from exporter.kube.trigger import ObjectRef, PatchError
from exporter.metrics.instruments import Metrics
from exporter.model import ANONYMOUS, DEFAULT_TLS, Credentials, RepositoryRef, TLSOptions
from exporter.registry.cache import TagCache
from exporter.registry.errors import RegistryError
from exporter.state import StateStore

DIGEST = "sha256:" + "d" * 64
SOURCE = "source.toolkit.fluxcd.io"
RESOURCES = {
    kind: Resource(kind, SOURCE, "v1", plural)
    for kind, plural in (
        ("OCIRepository", "ocirepositories"),
        ("HelmRepository", "helmrepositories"),
        ("HelmChart", "helmcharts"),
    )
}


@dataclass
class FakeRegistry:
    """Tags per repository; per-host gates (hang until released), failures and counters."""

    tags: dict[str, list[str]] = field(default_factory=dict)  # "host/path" -> tags
    gates: dict[str, threading.Event] = field(default_factory=dict)  # host -> released when set
    failures: dict[str, RegistryError] = field(default_factory=dict)  # host -> raised
    created: dict[str, float] = field(default_factory=dict)  # digest -> Unix seconds
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def _call(self, repo: RepositoryRef, what: str) -> Iterator[None]:
        host = repo.registry
        with self.lock:
            self.calls.append(f"{what} {repo}")
            self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self.peak[host] = max(self.peak.get(host, 0), self.in_flight[host])
        try:
            gate = self.gates.get(host)
            if gate is not None:
                gate.wait(30)
            if self.delay:
                time.sleep(self.delay)
            failure = self.failures.get(host)
            if failure is not None:
                raise failure
            yield
        finally:
            with self.lock:
                self.in_flight[host] -= 1

    def list_tags(
        self,
        repo: RepositoryRef,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> list[str]:
        with self._call(repo, "list"):
            return list(self.tags.get(str(repo), []))

    def resolve_digest(
        self,
        repo: RepositoryRef,
        reference: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> str:
        with self._call(repo, "digest"):
            return DIGEST

    def manifest_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> float | None:
        with self._call(repo, "created"):
            return self.created.get(digest)


class FakeAccess:
    def __init__(self) -> None:
        self.asked: list[AccessRefs] = []

    def resolve(self, refs: AccessRefs, repo: RepositoryRef) -> RegistryAccess:
        self.asked.append(refs)
        return RegistryAccess(ANONYMOUS, TLSOptions(insecure=True))


@dataclass
class FakeKube:
    """Patcher and EventSink: records patches and Events; can fail or be slow."""

    patches: list[tuple[str, str, str]] = field(default_factory=list)  # (name, token, revision)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (name, reason, message)
    fail: bool = False
    gone: set[str] = field(default_factory=set)
    patch_gate: threading.Event | None = None
    refs: list[ObjectRef] = field(default_factory=list)  # of the Events
    revisions: list[str] = field(default_factory=list)  # of the Events

    def wait_turn(self) -> None:
        return  # no rate limit in the fake

    def request(self, ref: ObjectRef, token: str, revision: str) -> bool:
        if self.patch_gate is not None:
            self.patch_gate.wait(30)
        if self.fail:
            raise PatchError(f"patch of {ref.name} failed: HTTP 500")
        if ref.name in self.gone:
            return False
        self.patches.append((ref.name, token, revision))
        return True

    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        self.events.append((ref.name, reason, message))
        self.refs.append(ref)
        self.revisions.append(revision)


def oci(
    name: str,
    url: str,
    *,
    ns: str = "apps",
    semver: str | None = ">=1.0.0",
    tag: str | None = None,
    applied: str | None = None,
    rv: str = "1",
    annotations: Mapping[str, str] | None = None,
    suspend: bool = False,
) -> dict[str, Any]:
    ref: dict[str, str] = {"semver": semver} if semver else {"tag": tag or "latest"}
    obj: dict[str, Any] = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {
            "name": name, "namespace": ns, "resourceVersion": rv, "generation": 1,
            "uid": f"uid-{ns}-{name}",
            "annotations": dict(annotations or {"oci-trigger.gitlab.com/enabled": "true"}),
        },
        "spec": {"url": url, "interval": "1h", "ref": ref, "insecure": True, "suspend": suspend},
        "status": {},
    }  # fmt: skip
    if applied is not None:
        obj["status"] = {
            "artifact": {"revision": applied, "lastUpdateTime": "2026-01-01T00:00:00Z"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded"}],
            "observedGeneration": 1,
        }
    return obj


@dataclass
class Rig:
    engine: Engine
    store: StateStore
    registry: FakeRegistry
    kube: FakeKube
    metrics: Metrics
    workers: HostWorkers
    clock: Callable[[], float]

    def state(self, name: str) -> str:
        for row in self.store.snapshot().targets:
            if row.id.name == name:
                return row.state.value
        return "absent"

    def row_message(self, name: str) -> str:
        for row in self.store.snapshot().targets:
            if row.id.name == name:
                return row.message
        return ""

    def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> float:
        """Step the engine until ``predicate``; returns the seconds it took."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise AssertionError("timed out")
            self.engine.step(0.01)
        return time.monotonic() - start


@contextmanager
def rig(
    *,
    concurrency: int = 2,
    dry_run: bool = False,
    deadline: float = 30.0,
    default_interval: float = 60.0,
    registry: FakeRegistry | None = None,
    kube: FakeKube | None = None,
    clock: Callable[[], float] = time.time,
    tag_ttl: float = 60.0,
    tag_parsing: TagParsing = TagParsing.FLUX_2_7,
) -> Iterator[Rig]:
    registry = registry or FakeRegistry()
    kube = kube or FakeKube()
    store = StateStore()
    metrics = Metrics()
    workers = HostWorkers(concurrency)
    engine = Engine(
        EngineConfig(
            prefix="oci-trigger.gitlab.com/",
            min_interval=1.0,
            default_interval=default_interval,
            dry_run=dry_run,
            backoff=Backoff(60.0, 3600.0),
            deadline=deadline,
            event_gap=2.0,
            expedite_window=900.0,
            tag_parsing=tag_parsing,
        ),
        resources=RESOURCES,
        cache=TagCache(registry, ttl=tag_ttl, clock=clock),
        access=FakeAccess(),
        patcher=kube,
        events=kube,
        store=store,
        observer=metrics,
        workers=workers,
        clock=clock,
    )
    try:
        yield Rig(engine, store, registry, kube, metrics, workers, clock)
    finally:
        for gate in registry.gates.values():
            gate.set()
        engine.stop()
        workers.stop()
