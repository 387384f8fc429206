"""What survives between checks of one target: when each newer artifact was first seen,
our last reconcile request, the freshest artifact last seen, and the back-off for
repeating a request Flux did not apply.

Immutable: the decision takes a :class:`Memory` and hands back the next one. Across
restarts only the annotations survive (``requested-revision``, ``requestedAt``); the
decision reads those, so losing this memory costs precision (lag start, back-off step),
never a duplicate request. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.core.backoff import Backoff
from exporter.core.observation import Fresh, applied_key, revision_key
from exporter.flux.targets import Target

MAX_FIRST_SEEN = 32


@dataclass(frozen=True, slots=True)
class Request:
    revision: str
    at: float
    token: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Memory:
    """Per target, kept by the caller across checks. ``first_seen``: (revision, time);
    ``last_fresh``: the freshest artifact the registry last named, kept through registry
    failures so the lag keeps growing from it."""

    first_seen: tuple[tuple[str, float], ...] = ()
    request: Request | None = None
    last_fresh: Fresh | None = None

    def seen_at(self, revision: str) -> float | None:
        return next((at for rev, at in self.first_seen if rev == revision), None)


DEFAULT_BACKOFF = Backoff(60.0, 3600.0)  # repeating a request for a ``stuck`` target


def remember(target: Target, memory: Memory, revision: str, at: float) -> Memory:
    """Record when ``revision`` appeared (the earliest time told: a creation time read
    after the first sight moves it back); forget what the applied revision superseded."""
    entries = list(memory.first_seen)
    seen = memory.seen_at(revision)
    if seen is None:
        entries.append((revision, at))
    elif at < seen:  # its creation time, learnt after it was first seen
        entries = [(r, at if r == revision else t) for r, t in entries]
    applied = applied_key(target)
    applied_at = next((t for r, t in entries if revision_key(target, r) == applied), None)
    if applied_at is not None:
        entries = [(r, t) for r, t in entries if t > applied_at or r == revision]
        entries = [(r, t) for r, t in entries if revision_key(target, r) != applied]
    entries.sort(key=lambda e: e[1])
    if len(entries) > MAX_FIRST_SEEN:
        entries = entries[:1] + entries[-(MAX_FIRST_SEEN - 1) :]
    return replace(memory, first_seen=tuple(entries))
