"""Liveness is progress: unhealthy only when checks are due and none completed (or was
reported overdue) for ``stall_after`` seconds. Written by the coordinator, read by the
probe's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Liveness:
    def __init__(self, stall_after: float, clock: Callable[[], float]) -> None:
        self._stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._progress_at = clock()

    def progress(self, now: float) -> None:
        with self._lock:
            self._progress_at = now

    def healthy(self) -> tuple[bool, str]:
        with self._lock:
            age = self._clock() - self._progress_at
        ok = age < self._stall_after
        return ok, f"last progress {age:.0f}s ago (limit {self._stall_after:.0f}s)"
