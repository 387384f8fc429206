"""The engine: plan which targets are due, observe them concurrently, decide and act in order.

Three kinds of threads, each with one job:

- the **coordinator** (whoever calls :meth:`Engine.step`) owns every :class:`Tracked`
  record. It plans (``core.plan``), hands registry work to the workers, and handles the
  results in completion order: ``decide`` (pure), then queue the side effects, then
  record. Nothing on it waits for a registry or the API server;
- the **workers** (``HostWorkers``), partitioned per registry host, resolve the object's
  registry access and observe the registry through the shared tag cache. A slow or
  rate-limited host only delays its own targets; a check that outlives its deadline is
  reported (``error``, ``unavailable``) while it finishes in the background;
- the **actor** sends patches and Events behind the rate limit, in order.

A target that needs no registry (a problem, suspended, pinned) is judged on the spot.
A check whose object changed while it ran is dropped: the new version is due at once.
Liveness is progress: :meth:`healthy` fails only when checks are due and none completed
(or was reported overdue) for ``stall_after`` seconds.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from exporter.app.actor import Actor, EventSink, Patch, Patched, Patcher
from exporter.app.catalog import Catalog
from exporter.app.observe import observe
from exporter.app.recorder import CheckObserver, Recorder
from exporter.app.state import StateStore
from exporter.app.workers import HostWorkers
from exporter.core.backoff import Backoff
from exporter.core.decision import Decision, decide
from exporter.core.hooks import HookSource, Nudge, matching, merged
from exporter.core.observation import Fresh, Observation, RegistryFailure
from exporter.core.plan import Tracked, needs_registry, next_due, wait_after_failure
from exporter.flux.policy import TagParsing
from exporter.flux.targets import SourceProblem, Target, TargetId
from exporter.kube.access import AccessError, AccessRefs, RegistryAccess
from exporter.kube.discovery import Resource
from exporter.kube.trigger import ObjectRef
from exporter.model import ErrorReason, EventResult, RepositoryRef
from exporter.registry.cache import TagCache

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class AccessSource(Protocol):
    def resolve(self, refs: AccessRefs, repo: RepositoryRef) -> RegistryAccess: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    prefix: str
    min_interval: float
    default_interval: float
    dry_run: bool
    backoff: Backoff
    deadline: float = 30.0  # seconds a check may take before it is reported overdue
    retry_after_cap: float = 300.0  # the longest Retry-After honoured
    expedite_every: float = 5.0
    stall_after: float = 120.0  # liveness: no progress for this long while checks are due
    event_gap: float = 2.0  # one cache refresh per repository per this many seconds, at most
    expedite_window: float = 900.0  # after a tag push, look often for this long
    tag_parsing: TagParsing = TagParsing.FLUX_2_7  # which Flux's tag rule to follow


@dataclass(frozen=True, slots=True)
class _Delivery:
    source: HookSource
    nudges: tuple[Nudge, ...]
    received_at: float


@dataclass(frozen=True, slots=True)
class _Lead:
    leading: bool


@dataclass(frozen=True, slots=True)
class _Observed:
    target: TargetId
    source: Target
    observation: Observation


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        resources: Mapping[str, Resource],
        cache: TagCache,
        access: AccessSource,
        patcher: Patcher,
        events: EventSink,
        store: StateStore,
        observer: CheckObserver,
        workers: HostWorkers,
        clock: Callable[[], float] = time.time,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._leading = leading
        self._c = config
        self._resources = resources
        self._cache = cache
        self._access = access
        self._store = store
        self._workers = workers
        self._observer = observer
        self._clock = clock
        # queue.Queue, not SimpleQueue: the coordinator runs on the main thread, and a signal
        # interrupting SimpleQueue.get(timeout) can leave it waiting for ever (CPython 3.11)
        self._done: queue.Queue[_Observed | Patched | _Delivery | _Lead] = queue.Queue()
        self._nudged_at: dict[TargetId, float] = {}  # when the event that made it due came
        self._requested_after_event: dict[TargetId, float] = {}
        self._last_refresh: dict[tuple[str, str], float] = {}  # repository -> last nudge
        self._deferred: dict[tuple[str, str], tuple[float, Nudge, float]] = {}
        self._actor = Actor(patcher, events, self._done.put, leading)
        # a dry run (``check``, ``run --dry-run``) writes nothing to the cluster, Events included
        self._recorder = Recorder(store, observer, _NoEvents() if config.dry_run else self._actor)
        self._catalog = Catalog(
            config.prefix,
            min_interval=config.min_interval,
            default_interval=config.default_interval,
            tag_parsing=config.tag_parsing,
        )
        self._tracked: dict[TargetId, Tracked] = {}
        self._due: list[tuple[float, int, TargetId]] = []  # heap of (due at, seq, target)
        self._due_at: dict[TargetId, float] = {}  # the live entry of each target
        self._in_flight: dict[TargetId, float] = {}  # checks under way: since when
        self._seq = 0
        self._repo_waiting: dict[RepositoryRef, list[Target]] = {}  # behind a first check
        self._repo_first: dict[RepositoryRef, Target] = {}  # that first check
        self._patch_failures: dict[TargetId, int] = {}  # consecutive failed patches
        self._decisions: dict[TargetId, Decision] = {}  # awaiting their patch's outcome
        self._sweep: set[TargetId] | None = None  # targets left in the current sweep
        self._sweep_started = 0.0
        self._lock = threading.Lock()  # guards progress_at for readers on other threads
        self._progress_at = clock()
        self.checks = 0  # checks completed (for tests and benchmarks)

    # -- inputs ---------------------------------------------------------------------------------

    def sync(self, objects: Mapping[str, Sequence[Obj]]) -> None:
        """Take the informers' objects: new targets are due at once, changed ones too."""
        parsed, counts = self._catalog.update(objects)
        self._store.set_sources(counts)
        for target_id, p in parsed.items():
            assert p.source is not None
            known = self._tracked.get(target_id)
            if known is None:
                self._set(target_id, Tracked(p.source, p.version))
            elif known.version != p.version:
                self._set(target_id, replace(known, source=p.source, version=p.version))
        for gone in [t for t in self._tracked if t not in parsed]:
            del self._tracked[gone]
            self._patch_failures.pop(gone, None)
            self._nudged_at.pop(gone, None)
            self._requested_after_event.pop(gone, None)
            self._due_at.pop(gone, None)
            self._in_flight.pop(gone, None)
            self._decisions.pop(gone, None)
            if self._sweep is not None:
                self._sweep.discard(gone)
        self._store.keep_only(set(self._tracked))
        if self._sweep is None:
            self._begin_sweep(self._clock())

    def deliver(self, source: HookSource, nudges: Sequence[Nudge], received_at: float) -> None:
        """From any thread (the events listener): handled by the coordinator at once."""
        self._done.put(_Delivery(source, tuple(nudges), received_at))

    def lead_changed(self, leading: bool) -> None:
        """From the leader election's thread: a new leader looks at everything at once."""
        self._done.put(_Lead(leading))

    def nudge(self, targets: Sequence[TargetId], *, expedite_for: float = 0.0) -> int:
        """Check these targets now (and every ``expedite_every`` s for ``expedite_for`` s)."""
        now = self._clock()
        found = 0
        for target_id in targets:
            t = self._tracked.get(target_id)
            if t is not None:
                found += 1
                until = max(t.expedite_until, now + expedite_for)
                self._set(target_id, replace(t, nudged=True, expedite_until=until))
        return found

    # -- the coordinator ------------------------------------------------------------------------

    def step(self, timeout: float) -> None:
        """Start what is due, then handle results for up to ``timeout`` seconds."""
        self._schedule(self._clock())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                message = (
                    self._done.get(timeout=max(0.0, left)) if left > 0 else self._done.get_nowait()
                )
            except queue.Empty:
                return
            self._handle(message)
            if isinstance(message, _Delivery | _Lead):
                self._schedule(self._clock())  # a push event's targets start now, not next step

    def run_pass(self, objects: Mapping[str, Sequence[Obj]], timeout: float | None = None) -> int:
        """Check every target once, wait for the results and the side effects (``check``,
        ``--once``); returns how many targets were checked."""
        self.sync(objects)
        for target_id, t in list(self._tracked.items()):
            self._set(target_id, replace(t, nudged=True))
        before = self.checks
        limit = time.monotonic() + (timeout if timeout is not None else self._c.deadline + 30)
        self._schedule(self._clock())
        while self._busy() and time.monotonic() < limit:
            self.step(0.2)
        self._actor.flush(timeout=30)
        while True:  # patch outcomes queued while flushing
            try:
                self._handle(self._done.get_nowait())
            except queue.Empty:
                break
        return self.checks - before

    def stop(self) -> None:
        self._actor.stop(timeout=3.0)

    # -- health ---------------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        with self._lock:
            age = self._clock() - self._progress_at
        ok = age < self._c.stall_after
        return ok, f"last progress {age:.0f}s ago (limit {self._c.stall_after:.0f}s)"

    # -- internals ------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._decisions) or any(
            not self._tracked[tid].overdue for tid in self._in_flight if tid in self._tracked
        )

    def _set(self, target_id: TargetId, tracked: Tracked) -> None:
        """Store a target's record and (re)schedule it: the one way records change."""
        self._tracked[target_id] = tracked
        if tracked.in_flight_since is not None:
            self._in_flight[target_id] = tracked.in_flight_since
        else:
            self._in_flight.pop(target_id, None)
        due = next_due(tracked, self._c.default_interval, self._c.expedite_every)
        if self._due_at.get(target_id) != due:
            self._due_at[target_id] = due
            if due != math.inf:
                self._seq += 1
                heapq.heappush(self._due, (due, self._seq, target_id))

    def _progress(self, now: float) -> None:
        with self._lock:
            self._progress_at = now

    def _nudge(self, nudge: Nudge, received_at: float, now: float) -> EventResult:
        """An event: expire the repositories' cached listings and make their targets due,
        at most once per repository per ``event_gap`` (later ones wait for the gap)."""
        matched = self._matching(nudge)
        if not matched:
            return EventResult.IGNORED
        result = EventResult.ACCEPTED
        for repo, targets in matched.items():
            key = (repo.registry, repo.path)
            last = self._last_refresh.get(key)
            if last is not None and now - last < self._c.event_gap:
                pending = self._deferred.get(key)
                if pending is None:
                    self._deferred[key] = (last + self._c.event_gap, nudge, received_at)
                else:  # one refresh at the gap's end for both: every namespace, the first time
                    when, earlier, at = pending
                    self._deferred[key] = (when, merged(earlier, nudge), min(at, received_at))
                result = EventResult.COALESCED
                continue
            self._refresh(repo, targets, nudge, received_at, now)
        return result

    def _refresh(
        self, repo: RepositoryRef, targets: list[TargetId], nudge: Nudge, at: float, now: float
    ) -> None:
        self._last_refresh[(repo.registry, repo.path)] = now
        self._cache.expire(repo)
        for target_id in targets:
            self._nudged_at.setdefault(target_id, at)
        self.nudge(targets, expedite_for=self._c.expedite_window if nudge.expedite else 0.0)

    def _matching(self, nudge: Nudge) -> dict[RepositoryRef, list[TargetId]]:
        repositories = {
            tid: t.source.repository
            for tid, t in self._tracked.items()
            if isinstance(t.source, Target)
        }
        return matching(nudge, repositories)

    def _fire_deferred(self, now: float) -> None:
        for key, (when, nudge, at) in list(self._deferred.items()):
            if now >= when:
                del self._deferred[key]
                targets = [
                    tid for tid, t in self._tracked.items()
                    if isinstance(t.source, Target)
                    and (t.source.repository.registry, t.source.repository.path) == key
                    and (nudge.namespaces is None or tid.namespace in nudge.namespaces)
                ]  # fmt: skip
                if targets:
                    repo = RepositoryRef(*key)
                    self._refresh(repo, targets, nudge, at, now)

    def _schedule(self, now: float) -> None:
        """Start what is due (a heap: no scan of every target), report overdue checks."""
        self._fire_deferred(now)
        for target_id, since in list(self._in_flight.items()):
            t = self._tracked.get(target_id)
            if t is not None and not t.overdue and now - since > self._c.deadline:
                self._report_overdue(t, now)
        while self._due and self._due[0][0] <= now:
            due, _, target_id = heapq.heappop(self._due)
            t = self._tracked.get(target_id)
            if t is None or self._due_at.get(target_id) != due:
                continue  # gone, or rescheduled since
            del self._due_at[target_id]
            if target_id in self._decisions:
                continue  # its patch is under way: rescheduled when it is done
            self._start(t, now)
        if not self._in_flight and not self._decisions and (not self._due or self._due[0][0] > now):
            self._progress(now)  # nothing due, nothing under way: idle is progress

    def _start(self, t: Tracked, now: float) -> None:
        source = t.source
        if not needs_registry(source):
            self._finish(replace(t, nudged=False), None, now)
            return
        assert isinstance(source, Target)
        self._set(source.id, replace(t, in_flight_since=now, nudged=False, overdue=False))
        # One check per repository goes first; the others on it wait for its answer and
        # then read the cache, rather than hold a worker each on the same registry request.
        waiting = self._repo_waiting.get(source.repository)
        if waiting is not None:
            waiting.append(source)
            return
        self._repo_waiting[source.repository] = []
        self._repo_first[source.repository] = source
        self._submit(source, t.memory.last_fresh)

    def _submit(self, source: Target, last: Fresh | None, *, quick: bool = False) -> None:
        def job() -> None:
            self._done.put(_Observed(source.id, source, self._observe(source, last)))

        self._workers.submit(source.repository.registry, job, quick=quick)

    def _release(self, repository: RepositoryRef) -> None:
        """The first check of a repository is done: the ones that waited for it go now."""
        self._repo_first.pop(repository, None)
        for source in self._repo_waiting.pop(repository, ()):
            known = self._tracked.get(source.id)
            if known is not None and known.source is source and known.in_flight_since:
                self._submit(source, known.memory.last_fresh, quick=True)  # the cache answers
            elif known is not None and known.in_flight_since:
                self._set(source.id, replace(known, in_flight_since=None, overdue=False))

    def _observe(self, target: Target, last: Any) -> Observation:
        """On a worker thread: access, then the registry; never raises."""
        try:
            try:
                access = self._access.resolve(_refs(target), target.repository)
            except AccessError as exc:
                return RegistryFailure(ErrorReason.CONFIG, str(exc), last)
            return observe(target, access, self._cache, last)
        except Exception:
            log.exception("checking %s failed unexpectedly", target.id,
                          extra=target.id.log_fields())  # fmt: skip
            return RegistryFailure(ErrorReason.INTERNAL, "internal error (see the log)", last)

    def _handle(self, message: _Observed | Patched | _Delivery | _Lead) -> None:
        now = self._clock()
        if isinstance(message, _Lead):
            if message.leading:  # whatever a standby held back is decided again, now
                for target_id, known in list(self._tracked.items()):
                    self._set(target_id, replace(known, nudged=True))
            return
        if isinstance(message, Patched):
            self._patched(message)
            return
        if isinstance(message, _Delivery):
            for nudge in message.nudges:
                result = self._nudge(nudge, message.received_at, now)
                self._observer.event_received(message.source.value, result)
            if not message.nudges:
                self._observer.event_received(message.source.value, EventResult.IGNORED)
            return
        if self._repo_first.get(message.source.repository) is message.source:
            self._release(message.source.repository)
        t = self._tracked.get(message.target)
        if t is None:
            return  # the object went away meanwhile
        if t.source is not message.source:  # changed meanwhile: check the new version now
            self._set(message.target, replace(t, in_flight_since=None, overdue=False))
            return
        self._finish(t, message.observation, now)

    def _report_overdue(self, t: Tracked, now: float) -> None:
        failure = RegistryFailure(
            ErrorReason.UNAVAILABLE,
            f"{t.source.repository.registry if isinstance(t.source, Target) else ''}: "
            f"no answer within {self._c.deadline:.0f}s",
            t.memory.last_fresh,
        )
        decision = decide(t.source, failure, t.memory, now, backoff=self._c.backoff)
        self._recorder.record(t.source, self._ref(t.source), decision, failure, None, now)
        self._set(t.source.id, replace(t, overdue=True, memory=decision.memory))
        self._swept(t.source.id, now)
        self._progress(now)

    def _finish(self, t: Tracked, observation: Observation | None, now: float) -> None:
        source = t.source
        try:
            decision = decide(source, observation, t.memory, now, backoff=self._c.backoff)
        except Exception:  # a bug must not stop the other targets
            log.exception("deciding on %s failed unexpectedly", source.id,
                          extra=source.id.log_fields())  # fmt: skip
            self._observer.check_failed(ErrorReason.INTERNAL)
            self._set(source.id, replace(
                t, in_flight_since=None, overdue=False, checked_at=now,
                checked_version=t.version,
            ))  # fmt: skip
            return
        not_before = 0.0
        if isinstance(observation, RegistryFailure):
            not_before = now + wait_after_failure(observation.retry_after, self._c.retry_after_cap)
        fresh = decision.memory.last_fresh
        expedite = t.expedite_until
        before = t.memory.last_fresh
        if expedite and fresh is not None and before is not None and fresh != before:
            expedite = 0.0  # the announced build arrived: back to the usual interval
        self._set(
            source.id,
            replace(
                t,
                memory=decision.memory,
                checked_version=t.version,
                checked_at=now,
                not_before=not_before,
                in_flight_since=None,
                overdue=False,
                expedite_until=expedite,
            ),
        )
        event_at = self._nudged_at.pop(source.id, None)
        try:  # the record is stored first: a bug here cannot leave the target unscheduled
            self._recorder.record(source, self._ref(source), decision, observation, fresh, now)
            self._act(source, decision)
        except Exception:
            log.exception("recording or acting on %s failed unexpectedly", source.id,
                          extra=source.id.log_fields())  # fmt: skip
            self._observer.check_failed(ErrorReason.INTERNAL)
        if event_at is not None and source.id in self._decisions:  # a patch is queued
            self._requested_after_event[source.id] = event_at
        self.checks += 1
        self._swept(source.id, now)
        self._progress(now)

    def _act(self, source: Target | SourceProblem, decision: Decision) -> None:
        if not decision.should_request or not isinstance(source, Target):
            return
        revision = decision.target_revision or ""
        applied = source.applied.raw if source.applied else "nothing"
        if not self._c.dry_run and not self._leading():
            log.debug("standby: the leader requests %s -> %s", source.id, revision)
            return
        if self._c.dry_run:
            log.info("dry run: would request reconciliation of %s: %s -> %s",
                     source.id, applied, revision,
                     extra=source.id.log_fields(revision))  # fmt: skip
            return
        self._decisions[source.id] = decision
        self._actor.patch(
            Patch(source.id, self._ref(source), decision.request_token or "", revision, applied)
        )

    def _patched(self, outcome: Patched) -> None:
        target_id = outcome.patch.target
        decision = self._decisions.pop(target_id, None)
        event_at = self._requested_after_event.pop(target_id, None)
        if not outcome.skipped and outcome.existed:  # skipped: decided again by the leader
            self._store.count_request(target_id, failed=not outcome.ok)
        if outcome.ok and event_at is not None:
            self._observer.event_to_request(max(0.0, self._clock() - event_at))
        t = self._tracked.get(target_id)
        if t is None:
            return
        self._due_at.pop(target_id, None)  # its turn may have come while the patch ran
        if decision is not None and outcome.ok:
            self._patch_failures.pop(target_id, None)
            t = replace(t, memory=decision.memory_after_request or t.memory)
        elif not outcome.skipped and outcome.existed:
            t = self._patch_failed(t, outcome)
        self._set(target_id, t)

    def _patch_failed(self, t: Tracked, outcome: Patched) -> Tracked:
        """Back off per object (1 min doubling to 1 h, as a stuck request) and say it once."""
        failures = self._patch_failures.get(t.source.id, 0) + 1
        self._patch_failures[t.source.id] = failures
        wait = self._c.backoff.delay(failures)
        if failures == 1:
            self._actor.event(outcome.patch.ref, "ReconcileRequestFailed",
                              f"{outcome.error}; retrying with back-off", warning=True)  # fmt: skip
        log.warning("%s: the reconcile request will be tried again in %.0fs (failure %d)",
                    t.source.id, wait, failures, extra=t.source.id.log_fields())  # fmt: skip
        return replace(t, not_before=self._clock() + wait)

    def _begin_sweep(self, now: float) -> None:
        self._sweep = set(self._tracked)
        self._sweep_started = now
        if not self._sweep:  # nothing to check: done at once, and again at the next sync
            self._store.pass_done()
            self._sweep = None

    def _swept(self, target_id: TargetId, now: float) -> None:
        if self._sweep is None:
            return
        self._sweep.discard(target_id)
        if self._sweep:
            return
        first = self._store.passes == 0
        self._store.pass_done()
        log.log(
            logging.INFO if first else logging.DEBUG,
            "%s full check of %d targets in %.1fs",
            "first" if first else "a", len(self._tracked), now - self._sweep_started,
        )  # fmt: skip
        self._sweep = set(self._tracked)
        self._sweep_started = now

    def _ref(self, source: Target | SourceProblem) -> ObjectRef:
        return ObjectRef(
            self._resources[source.id.kind],
            source.id.namespace,
            source.id.name,
            uid=source.uid,
            resource_version=source.resource_version,
        )


class _NoEvents:
    def event(self, ref: ObjectRef, reason: str, message: str, *, warning: bool = False) -> None:
        return  # the log line that goes with every Event still tells


def _refs(target: Target) -> AccessRefs:
    a = target.access
    return AccessRefs(
        namespace=target.id.namespace,
        secret_name=a.secret,
        service_account=a.service_account,
        cert_secret_name=a.cert_secret,
        insecure=a.insecure,
        basic_auth_keys=target.id.kind == "HelmChart",
    )
