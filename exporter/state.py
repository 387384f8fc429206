"""The one place where the exporter's mutable state lives; readers get immutable snapshots.

The checker writes a row per target after each check and drops the row when the object
goes away (so no stale series survive it); the metrics collector and the ``check``
command read a ``Snapshot``: a copy taken under the lock, nothing computed on read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from exporter.targets import State, TargetId


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Snapshot:
    targets: tuple[TargetRow, ...]
    sources: Mapping[tuple[str, str, bool], int]  # (kind, namespace, opted_in) -> count
    requests: Mapping[TargetId, int]
    request_errors: Mapping[TargetId, int]
    ready: bool
    passes: int
    last_pass_end: float | None = None


@dataclass
class _Counters:
    requests: dict[TargetId, int] = field(default_factory=dict)
    request_errors: dict[TargetId, int] = field(default_factory=dict)


class StateStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[TargetId, TargetRow] = {}
        self._sources: dict[tuple[str, str, bool], int] = {}
        self._counters = _Counters()
        self._ready = False
        self._passes = 0
        self._last_pass_end: float | None = None

    def put(self, row: TargetRow) -> None:
        with self._lock:
            previous = self._rows.get(row.id)
            if previous is not None and row.last_check is None:
                row = replace(row, last_check=previous.last_check)
            self._rows[row.id] = row

    def row(self, target: TargetId) -> TargetRow | None:
        with self._lock:
            return self._rows.get(target)

    def keep_only(self, alive: set[TargetId]) -> None:
        """Forget targets (and their counters) whose objects are gone or opted out."""
        with self._lock:
            for gone in [t for t in self._rows if t not in alive]:
                del self._rows[gone]
            for counter in (self._counters.requests, self._counters.request_errors):
                for gone in [t for t in counter if t not in alive]:
                    del counter[gone]

    def count_request(self, target: TargetId, *, failed: bool) -> None:
        with self._lock:
            counter = self._counters.request_errors if failed else self._counters.requests
            counter[target] = counter.get(target, 0) + 1

    def set_sources(self, counts: Mapping[tuple[str, str, bool], int]) -> None:
        with self._lock:
            self._sources = dict(counts)

    def pass_done(self, now: float) -> None:
        with self._lock:
            self._ready = True
            self._passes += 1
            self._last_pass_end = now

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                targets=tuple(sorted(self._rows.values(), key=lambda r: str(r.id))),
                sources=MappingProxyType(dict(self._sources)),
                requests=MappingProxyType(dict(self._counters.requests)),
                request_errors=MappingProxyType(dict(self._counters.request_errors)),
                ready=self._ready,
                passes=self._passes,
                last_pass_end=self._last_pass_end,
            )
