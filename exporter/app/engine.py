"""The engine: plan which targets are due, observe them concurrently, decide and act in order.

Three kinds of threads, each with one job:

- the **coordinator** (whoever calls :meth:`Engine.step`) runs this loop over small objects
  that own their state: the :class:`Book` (every target's record, its schedule, the pass),
  the :class:`RepositoryGate` (one check per repository first), the
  :class:`EventCoalescer` (push events to cache refreshes) and the :class:`Judge` (a
  check's result to a decision, its traces and its request). It hands registry work to
  the workers and handles results in completion order. Nothing on it waits for a
  registry or the API server;
- the **workers** (``HostWorkers``), partitioned per registry host, run the
  :class:`Checker`: the object's registry access, then the shared tag cache. A slow or
  rate-limited host only delays its own targets; a check that outlives its deadline is
  reported (``error``, ``unavailable``) while it finishes in the background;
- the **actor** sends patches and Events behind the rate limit, in order.

A target that needs no registry (a problem, suspended, pinned) is judged on the spot.
A check whose object changed while it ran is dropped: the new version is due at once.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from exporter.app.actor import Actor, EventSink, Patched, Patcher
from exporter.app.book import Book
from exporter.app.catalog import Catalog
from exporter.app.check import AccessSource, Checker, Creation, Creations, same_question
from exporter.app.config import EngineConfig
from exporter.app.gate import RepositoryGate
from exporter.app.judge import Judge
from exporter.app.liveness import Liveness
from exporter.app.messages import Created, Delivery, Lead, Message, Observed
from exporter.app.pushes import Pushes
from exporter.app.recorder import NO_EVENTS, CheckObserver, Recorder
from exporter.app.requests import Requests
from exporter.app.workers import HostWorkers
from exporter.core.hooks import HookSource, Nudge
from exporter.core.observation import Observation
from exporter.core.plan import Tracked, needs_registry
from exporter.flux.targets import Target, TargetId
from exporter.kube.discovery import Resource
from exporter.model import EventResult
from exporter.registry.cache import TagCache
from exporter.state import StateStore

log = logging.getLogger(__name__)
Obj = dict[str, Any]


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
        self._c = config
        self._store = store
        self._workers = workers
        self._observer = observer
        self._clock = clock
        self._checker = Checker(access, cache)
        # queue.Queue, not SimpleQueue: the coordinator runs on the main thread, and a signal
        # interrupting SimpleQueue.get(timeout) can leave it waiting for ever (CPython 3.11)
        self._done: queue.Queue[Message] = queue.Queue()
        self._actor = Actor(patcher, events, self._done.put, leading)
        self.catalog = Catalog(
            config.prefix,
            min_interval=config.min_interval,
            default_interval=config.default_interval,
            tag_parsing=config.tag_parsing,
        )
        self._book = Book(
            default_interval=config.default_interval,
            expedite_every=config.expedite_every,
            pass_done=lambda _ended_at: store.pass_done(),
            passes=lambda: store.passes,
        )
        self._gate = RepositoryGate()
        self._pushes = Pushes(self._book, cache, gap=config.event_gap,
                              expedite_window=config.expedite_window)  # fmt: skip
        self._requests = Requests(self._actor, store=store, observer=observer,
                                  backoff=config.backoff, clock=clock, leading=leading,
                                  dry_run=config.dry_run)  # fmt: skip
        # a dry run (``check``, ``run --dry-run``) writes nothing to the cluster, Events included
        recorder = Recorder(store, observer, NO_EVENTS if config.dry_run else self._actor)
        self._judge = Judge(config, recorder=recorder, requests=self._requests,
                            observer=observer, resources=resources)  # fmt: skip
        self._liveness = Liveness(config.stall_after, clock)
        self._creations = Creations()
        self.checks = 0  # checks completed (for tests and benchmarks)

    # -- inputs ---------------------------------------------------------------------------------

    def sync(self, objects: Mapping[str, Sequence[Obj]]) -> None:
        """Take the informers' objects: new targets are due at once, changed ones too."""
        parsed, counts = self.catalog.update(objects)
        self._store.set_sources(counts)
        self._book.take(
            {t: (p.source, p.version) for t, p in parsed.items() if p.source is not None}
        )
        self._store.keep_only(set(self._book.ids()))
        self._book.begin_pass(self._clock())

    def deliver(self, source: HookSource, nudges: Sequence[Nudge], received_at: float) -> None:
        """From any thread (the events listener): handled by the coordinator at once."""
        self._done.put(Delivery(source, tuple(nudges), received_at))

    def lead_changed(self, leading: bool) -> None:
        """From the leader election's thread: a new leader looks at everything at once."""
        self._done.put(Lead(leading))

    def nudge(self, targets: Sequence[TargetId], *, expedite_for: float = 0.0) -> int:
        """Check these targets now (and every ``expedite_every`` s for ``expedite_for`` s)."""
        return self._book.nudge(targets, self._clock(), expedite_for)

    # -- the coordinator ------------------------------------------------------------------------

    def step(self, timeout: float) -> None:
        """Start what is due, then handle results for up to ``timeout`` seconds."""
        self._start_due(self._clock())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                message = self._done.get(timeout=left) if left > 0 else self._done.get_nowait()
            except queue.Empty:
                return
            self._handle(message)
            if isinstance(message, Delivery | Lead | Created):
                self._start_due(self._clock())  # a push event's targets start now, not next step

    def run_pass(self, objects: Mapping[str, Sequence[Obj]], timeout: float | None = None) -> int:
        """Check every target once, wait for the results and the side effects (``check``,
        ``--once``); returns how many targets were checked."""
        self._checker.creation_inline = True
        self.sync(objects)
        self._book.nudge(list(self._book.ids()), self._clock())
        before = self.checks
        limit = time.monotonic() + (timeout if timeout is not None else self._c.deadline + 30)
        self._start_due(self._clock())
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

    def healthy(self) -> tuple[bool, str]:
        return self._liveness.healthy()

    # -- internals ------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self._book.busy() or self._creations.busy

    def _start_due(self, now: float) -> None:
        """Refresh what events asked for, report overdue checks, start what is due."""
        self._pushes.due(now)
        if self._creations.pending and self._store.passes:
            self._read_creations()
        for target_id in self._book.started_before(now - self._c.deadline):
            t = self._book[target_id]
            if not t.overdue:
                self._report_overdue(t, now)
        for target_id in self._book.due(now):
            t = self._book[target_id]
            if t.patch is None:  # else its patch is under way: rescheduled when it is done
                self._start(t, now)
        if self._book.idle(now):
            self._liveness.progress(now)  # nothing due, nothing under way: idle is progress

    def _start(self, t: Tracked, now: float) -> None:
        source = t.source
        if not needs_registry(source):
            self._finish(replace(t, nudged=False), None, now)
            return
        assert isinstance(source, Target)
        self._book.set(source.id, replace(t, in_flight_since=now, nudged=False, overdue=False))
        if self._gate.admit(source):
            self._submit(source, t)

    def _submit(self, source: Target, t: Tracked, *, quick: bool = False) -> None:
        last = t.memory.last_fresh

        def job() -> None:
            observation, creation = self._checker.check(source, last)
            self._done.put(Observed(source.id, source, observation, creation))

        self._workers.submit(source.repository.registry, job, quick=quick)

    def _read_creations(self) -> None:
        for creation in self._creations.start():

            def job(c: Creation = creation) -> None:
                self._done.put(Created(c.repository, c.digest, self._checker.created(c)))

            self._workers.submit(creation.repository.registry, job, later=True)

    def _handle(self, message: Message) -> None:
        now = self._clock()
        if isinstance(message, Lead):
            if message.leading:  # whatever a standby held back is decided again, now
                self._book.nudge(list(self._book.ids()), now)
        elif isinstance(message, Patched):
            target = message.patch.target
            t = self._requests.outcome(self._book.get(target), message)
            if t is not None:
                self._book.unscheduled(target)  # its turn may have come while the patch ran
                self._book.set(target, t)
        elif isinstance(message, Delivery):
            for nudge in message.nudges:
                result = self._pushes.nudge(nudge, message.received_at, now)
                self._observer.event_received(message.source.value, result)
            if not message.nudges:
                self._observer.event_received(message.source.value, EventResult.IGNORED)
        elif isinstance(message, Created):
            self._creations.done()
            if message.created is not None:
                self._book.created(message.repository, message.digest, message.created)
        else:
            self._observed(message, now)

    def _observed(self, message: Observed, now: float) -> None:
        if message.creation is not None:
            self._creations.add(message.creation)
            if self._store.passes:  # after the first pass: read it now, at a lower priority
                self._read_creations()
        for waited in self._gate.release(message.source):
            known = self._book.get(waited.id)
            if known is None or not known.in_flight_since:
                continue
            if known.source is not waited:  # changed meanwhile: due again at once
                self._book.set(waited.id, replace(known, in_flight_since=None, overdue=False))
            elif same_question(message.source, waited, message.observation):
                self._finish(known, message.observation, now)  # the same answer, as is
            else:
                self._submit(waited, known, quick=True)  # the cache answers it
        t = self._book.get(message.target)
        if t is None:
            return  # the object went away meanwhile
        if t.source is not message.source:  # changed meanwhile: check the new version now
            self._book.set(message.target, replace(t, in_flight_since=None, overdue=False))
            return
        self._finish(t, message.observation, now)

    def _report_overdue(self, t: Tracked, now: float) -> None:
        self._book.set(t.source.id, self._judge.overdue(t, now))
        self._book.checked(t.source.id, now)
        self._liveness.progress(now)

    def _finish(self, t: Tracked, observation: Observation | None, now: float) -> None:
        done, judged = self._judge.finish(t, observation, now)
        self._book.set(t.source.id, done)
        if not judged:
            return
        self.checks += 1
        self._book.checked(t.source.id, now)
        self._liveness.progress(now)
