"""When each target is next due, as a heap: finding what is due never scans every target.

The schedule is told every new :class:`Tracked` record of a target (``update``) and
works out its next due time (``core.plan.next_due``). A record whose due time changed
gets a new heap entry; the old one stays in the heap and is skipped when popped, so a
reschedule costs a push, not a search. It also keeps the checks in flight, oldest first,
so finding the ones past their deadline looks at those only.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

from exporter.core.plan import Tracked, next_due
from exporter.flux.targets import TargetId


class Schedule:
    def __init__(self, *, default_interval: float, expedite_every: float) -> None:
        self._default_interval = default_interval
        self._expedite_every = expedite_every
        self._heap: list[tuple[float, int, TargetId]] = []  # (due at, seq, target)
        self._due_at: dict[TargetId, float] = {}  # the live heap entry of each target
        self._in_flight: dict[TargetId, float] = {}  # checks under way: since when
        self._started: list[tuple[float, int, TargetId]] = []  # heap of (since, seq, target)
        self._seq = 0

    def update(self, target: TargetId, tracked: Tracked) -> None:
        """A target's record changed: (re)schedule it from the new record."""
        since = tracked.in_flight_since
        if since is not None:
            if self._in_flight.get(target) != since:
                self._in_flight[target] = since
                self._seq += 1
                heapq.heappush(self._started, (since, self._seq, target))
        else:
            self._in_flight.pop(target, None)
        due = next_due(tracked, self._default_interval, self._expedite_every)
        if self._due_at.get(target) != due:
            self._due_at[target] = due
            if due != math.inf:
                self._seq += 1
                heapq.heappush(self._heap, (due, self._seq, target))

    def unscheduled(self, target: TargetId) -> None:
        """Its due entry was used up without a check (a patch of it was under way): the
        next ``update`` schedules it again even if its due time is the same."""
        self._due_at.pop(target, None)

    def forget(self, target: TargetId) -> None:
        self._due_at.pop(target, None)
        self._in_flight.pop(target, None)

    def due(self, now: float) -> Iterator[TargetId]:
        """Pop the targets due by ``now``, earliest first (each live entry once)."""
        while self._heap and self._heap[0][0] <= now:
            due, _, target = heapq.heappop(self._heap)
            if self._due_at.get(target) != due:
                continue  # gone, or rescheduled since
            del self._due_at[target]
            yield target

    def in_flight(self) -> list[tuple[TargetId, float]]:
        """The checks under way and since when (a copy: the caller may update)."""
        return list(self._in_flight.items())

    def started_before(self, moment: float) -> list[TargetId]:
        """The checks under way that started before ``moment``, each told once per check
        (the caller reports them overdue)."""
        found: dict[TargetId, None] = {}  # a restart at the same instant has two entries
        while self._started and self._started[0][0] < moment:
            since, _, target = heapq.heappop(self._started)
            if self._in_flight.get(target) == since:
                found[target] = None
        return list(found)

    def busy(self) -> bool:
        return bool(self._in_flight)

    def idle(self, now: float) -> bool:
        """Nothing under way and nothing due by ``now``."""
        return not self._in_flight and (not self._heap or self._heap[0][0] > now)
