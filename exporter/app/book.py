"""Every target's record, when each is next due, and the full pass under way.

The engine's one table: a :class:`Tracked` per target (every per-target fact lives in
it), the :class:`Schedule` derived from the records, the targets of each repository (a
push event or a creation time names a repository, not a target) and the :class:`Sweep`.
Changing a record goes through :meth:`Book.set`, which reschedules it; forgetting a
target is :meth:`Book.forget`, one call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, ItemsView, Iterator, KeysView, Mapping
from dataclasses import replace

from exporter.app.schedule import Schedule
from exporter.app.sweep import Sweep
from exporter.core.plan import Tracked
from exporter.flux.targets import SourceProblem, Target, TargetId
from exporter.model import RepositoryRef


class Book:
    def __init__(
        self,
        *,
        default_interval: float,
        expedite_every: float,
        pass_done: Callable[[float], None],
        passes: Callable[[], int],
    ) -> None:
        self._records: dict[TargetId, Tracked] = {}
        self._repositories: dict[RepositoryRef, set[TargetId]] = {}
        self._schedule = Schedule(default_interval=default_interval, expedite_every=expedite_every)
        self._sweep = Sweep(pass_done, passes)

    def __getitem__(self, target: TargetId) -> Tracked:
        return self._records[target]

    def get(self, target: TargetId) -> Tracked | None:
        return self._records.get(target)

    def ids(self) -> KeysView[TargetId]:
        return self._records.keys()

    def items(self) -> ItemsView[TargetId, Tracked]:
        return self._records.items()

    def set(self, target: TargetId, tracked: Tracked) -> None:
        """Store a target's record and (re)schedule it: the one way records change."""
        previous = self._records.get(target)
        self._records[target] = tracked
        if previous is None or previous.source is not tracked.source:
            self._index(target, previous, tracked)
        self._schedule.update(target, tracked)

    def forget(self, target: TargetId) -> None:
        previous = self._records.pop(target, None)
        if previous is not None:
            self._index(target, previous, None)
        self._schedule.forget(target)
        self._sweep.forget(target)

    def take(self, parsed: Mapping[TargetId, tuple[Target | SourceProblem, str]]) -> None:
        """The sources as parsed now, with their versions: new and changed ones are due at
        once; the others' records are forgotten."""
        for target, (source, version) in parsed.items():
            known = self._records.get(target)
            if known is None:
                self.set(target, Tracked(source, version))
            elif known.version != version:
                self.set(target, replace(known, source=source, version=version))
        for gone in [t for t in self._records if t not in parsed]:
            self.forget(gone)

    def nudge(self, targets: Collection[TargetId], now: float, expedite_for: float = 0.0) -> int:
        """Make these targets due now (and often for ``expedite_for`` s); how many exist."""
        found = 0
        for target in targets:
            t = self._records.get(target)
            if t is not None:
                found += 1
                until = max(t.expedite_until, now + expedite_for)
                self.set(target, replace(t, nudged=True, expedite_until=until))
        return found

    def pushed(
        self, targets: Collection[TargetId], received_at: float, now: float, expedite_for: float
    ) -> None:
        """A push event made these targets due: its arrival is kept (until their check) for
        the event-to-request latency."""
        for target in targets:
            t = self._records.get(target)
            if t is not None and t.event_at is None:
                self._records[target] = replace(t, event_at=received_at)
        self.nudge(targets, now, expedite_for)

    def on(
        self, repository: RepositoryRef, namespaces: Collection[str] | None = None
    ) -> list[TargetId]:
        """The targets that read ``repository`` (in ``namespaces``, when given)."""
        targets = self._repositories.get(repository, ())
        return [t for t in targets if namespaces is None or t.namespace in namespaces]

    def created(self, repository: RepositoryRef, digest: str, created: float) -> None:
        """A new artifact's creation time is known: the targets whose lag it moves back are
        due now (the cache answers their check)."""
        for target in self.on(repository):
            t = self._records[target]
            fresh = t.memory.last_fresh
            if fresh is None or fresh.digest != digest:
                continue
            if any(at > created for _, at in t.memory.first_seen):
                self.set(target, replace(t, nudged=True))

    def repositories(self) -> dict[TargetId, RepositoryRef]:
        """Each target's repository (targets that have one)."""
        return {t: repo for repo, targets in self._repositories.items() for t in targets}

    # -- the schedule and the pass ---------------------------------------------------------------

    def due(self, now: float) -> Iterator[TargetId]:
        return self._schedule.due(now)

    def unscheduled(self, target: TargetId) -> None:
        self._schedule.unscheduled(target)

    def in_flight(self) -> list[tuple[TargetId, float]]:
        return self._schedule.in_flight()

    def started_before(self, moment: float) -> list[TargetId]:
        return self._schedule.started_before(moment)

    def requesting(self) -> bool:
        """Whether a reconcile request of any target is under way."""
        return any(t.patch is not None for t in self._records.values())

    def busy(self) -> bool:
        """A request, or a check not yet reported overdue, is under way."""
        return self.requesting() or any(
            not self._records[t].overdue for t, _ in self._schedule.in_flight()
        )

    def idle(self, now: float) -> bool:
        """Nothing due, no check and no request under way."""
        return self._schedule.idle(now) and not self.requesting()

    def begin_pass(self, now: float) -> None:
        """Start a full pass over the targets known now, unless one is under way."""
        self._sweep.begin(self._records.keys(), now)

    def checked(self, target: TargetId, now: float) -> None:
        self._sweep.checked(target, now, self._records.keys())

    def _index(self, target: TargetId, previous: Tracked | None, now: Tracked | None) -> None:
        before = _repository(previous)
        after = _repository(now)
        if before == after:
            return
        if before is not None:
            targets = self._repositories[before]
            targets.discard(target)
            if not targets:
                del self._repositories[before]
        if after is not None:
            self._repositories.setdefault(after, set()).add(target)


def _repository(tracked: Tracked | None) -> RepositoryRef | None:
    if tracked is None or not isinstance(tracked.source, Target):
        return None
    return tracked.source.repository
