"""One record per target, and which targets are due for a check. Pure.

The engine keeps a :class:`Tracked` per target: the source as last parsed (with the
resourceVersion it came from), the decision's :class:`Memory`, the bookkeeping of the
schedule and of its reconcile request; forgetting a target is deleting its record. A
target is due when its object changed since its last check, when an event nudged it,
or when its interval has passed, and never while a check of it is in flight or its
registry asked us to wait (HTTP 429 ``Retry-After``, capped by the caller).
A target in an expedite window (a build announced by a tag push) is checked every
``expedite_every`` seconds until the window ends or a new artifact shows up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from exporter.core.decision import Decision
from exporter.core.memory import Memory
from exporter.core.observation import Fresh
from exporter.flux.targets import RuleKind, SourceProblem, Target


@dataclass(frozen=True, slots=True)
class Tracked:
    """What the engine knows of one target between checks.

    ``version``: the resourceVersion(s) the source was parsed from; ``checked_version`` the
    one of the last completed check. Times are Unix seconds from the caller's clock.
    """

    source: Target | SourceProblem
    version: str
    memory: Memory = field(default_factory=Memory)
    checked_version: str | None = None
    checked_at: float | None = None  # when the last check completed
    not_before: float = 0.0  # the registry asked us to wait until then
    in_flight_since: float | None = None  # a check (or a patch) of it is under way
    overdue: bool = False  # the check in flight passed its deadline and was reported
    nudged: bool = False  # an event asked for a check now
    expedite_until: float = 0.0  # check every ``expedite_every`` seconds until then
    event_at: float | None = None  # when the push event that made it due arrived
    patch: Decision | None = None  # the decision whose reconcile request is under way
    patch_event_at: float | None = None  # the push event that led to that request
    patch_failures: int = 0  # consecutive failed reconcile requests


def needs_registry(source: Target | SourceProblem) -> bool:
    """Problems, suspended and pinned targets are judged without asking the registry."""
    return (
        isinstance(source, Target)
        and not source.suspended
        and source.rule.kind is not RuleKind.PINNED
    )


def interval_of(source: Target | SourceProblem, default_interval: float) -> float:
    return source.options.interval if isinstance(source, Target) else default_interval


def next_due(tracked: Tracked, default_interval: float, expedite_every: float = 5.0) -> float:
    """When the target is next due (Unix seconds; ``-inf``: now; ``inf``: not while a
    check of it is in flight)."""
    if tracked.in_flight_since is not None:
        return math.inf
    if tracked.checked_at is None or tracked.version != tracked.checked_version:
        return -math.inf
    if tracked.nudged:
        return tracked.not_before
    due = tracked.checked_at + interval_of(tracked.source, default_interval)
    soon = tracked.checked_at + expedite_every
    if soon < tracked.expedite_until:
        due = min(due, soon)
    return max(due, tracked.not_before)


def after_check(
    tracked: Tracked, memory: Memory, retry_after: float | None, now: float, retry_after_cap: float
) -> Tracked:
    """The record once a check is done: the decision's memory, the registry's wait (a
    ``Retry-After``, capped), the event that made it due used up, and the expedite window
    closed when the announced build arrived (another tag or digest: not merely its
    creation time or the count of versions behind)."""
    expedite = tracked.expedite_until
    fresh, before = memory.last_fresh, tracked.memory.last_fresh
    arrived = fresh is not None and before is not None and not _same_artifact(fresh, before)
    if expedite and arrived:
        expedite = 0.0  # back to the usual interval
    return replace(
        tracked,
        memory=memory,
        checked_version=tracked.version,
        checked_at=now,
        not_before=now + wait_after_failure(retry_after, retry_after_cap) if retry_after else 0.0,
        in_flight_since=None,
        overdue=False,
        event_at=None,
        expedite_until=expedite,
    )


def wait_after_failure(retry_after: float | None, cap: float) -> float:
    """Seconds before a rate-limited target is checked again: ``Retry-After``, capped."""
    if retry_after is None or retry_after <= 0:
        return 0.0
    return min(retry_after, cap)


def _same_artifact(a: Fresh, b: Fresh) -> bool:
    return a.tag == b.tag and a.digest == b.digest
