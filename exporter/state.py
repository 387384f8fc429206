"""The one place where the exporter's mutable state lives; readers get immutable snapshots.

The engine writes a row per target after each check and drops the row when the object
goes away (so no stale series survive it); the metrics collector and the ``check``
command read a ``Snapshot``: a copy taken under the lock, nothing computed on read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from exporter.flux.targets import TargetId
from exporter.model import State


@dataclass(frozen=True, slots=True)
class TargetRow:
    """What is known of one target after its latest check."""

    id: TargetId
    url: str
    rule: str  # human-readable: "semver >=1.0.0", "tag latest", "digest sha256:…", "version 1.2.3"
    applied_revision: str
    latest_revision: str
    state: State
    reason: str = ""  # error reason (auth, not_found, ...) or a short explanation
    message: str = ""
    lag_seconds: float = 0.0
    versions_behind: int = 0
    last_check: float | None = None  # Unix seconds of the last successful registry check
    would_request: bool = False
    # messages already raised as Warning Events since the target turned to this bad state:
    # a failure whose message alternates between two causes raises each once, not every check
    reported: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    targets: tuple[TargetRow, ...]
    sources: Mapping[tuple[str, str, bool], int]  # (kind, namespace, opted_in) -> count
    requests: Mapping[TargetId, int]
    request_errors: Mapping[TargetId, int]
    passes: int


@dataclass
class _Counters:
    requests: dict[TargetId, int] = field(default_factory=dict)
    request_errors: dict[TargetId, int] = field(default_factory=dict)


class StateStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0  # bumped on every change: the exposition renders once per change
        self._rows: dict[TargetId, TargetRow] = {}
        self._sources: dict[tuple[str, str, bool], int] = {}
        self._counters = _Counters()
        self._passes = 0

    def put(self, row: TargetRow) -> None:
        with self._lock:
            previous = self._rows.get(row.id)
            if previous is not None:
                row = _sharing(row, previous)
            if row != previous:
                self._rows[row.id] = row
                self._bump()

    def row(self, target: TargetId) -> TargetRow | None:
        with self._lock:
            return self._rows.get(target)

    def keep_only(self, alive: set[TargetId]) -> None:
        """Forget targets (and their counters) whose objects are gone or opted out."""
        with self._lock:
            gone = [t for t in self._rows if t not in alive]
            for target in gone:
                del self._rows[target]
            for counter in (self._counters.requests, self._counters.request_errors):
                for target in [t for t in counter if t not in alive]:
                    del counter[target]
            if gone:
                self._bump()

    def count_request(self, target: TargetId, *, failed: bool) -> None:
        with self._lock:
            counter = self._counters.request_errors if failed else self._counters.requests
            counter[target] = counter.get(target, 0) + 1
            self._bump()

    def set_sources(self, counts: Mapping[tuple[str, str, bool], int]) -> None:
        with self._lock:
            if dict(counts) != self._sources:
                self._sources = dict(counts)
                self._bump()

    def pass_done(self) -> None:
        with self._lock:
            self._passes += 1

    def _bump(self) -> None:
        self._version += 1
        self._changed.notify_all()

    @property
    def passes(self) -> int:
        """Full checks of every target done so far (no copy of the rows, unlike snapshot)."""
        with self._lock:
            return self._passes

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until the version differs from ``since`` (or ``timeout``); the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != since, timeout)
            return self._version

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                version=self._version,
                targets=tuple(sorted(self._rows.values(), key=_order)),
                sources=MappingProxyType(dict(self._sources)),
                requests=MappingProxyType(dict(self._counters.requests)),
                request_errors=MappingProxyType(dict(self._counters.request_errors)),
                passes=self._passes,
            )


def _order(row: TargetRow) -> tuple[str, str, str]:
    return (row.id.kind.value, row.id.namespace, row.id.name)


_SHARED = ("url", "rule", "applied_revision", "latest_revision", "reason", "message", "reported")


def _sharing(row: TargetRow, previous: TargetRow) -> TargetRow:
    """``row`` keeping ``previous``'s last check when it has none, and holding
    ``previous``'s own values where they are equal. A check writes a new row each time,
    its texts made anew, while most often only the last check's time moves; the
    exposition holds the rows it last rendered until its next render (up to a minute at
    ten thousand targets): without sharing, that is a second copy of every text."""
    same = {
        name: kept
        for name in _SHARED
        if (kept := getattr(previous, name)) is not (new := getattr(row, name)) and kept == new
    }
    if row.last_check is None and previous.last_check is not None:
        same["last_check"] = previous.last_check
    return replace(row, **same) if same else row
