"""Worker threads partitioned by registry host: a slow host only delays its own targets.

Each host gets its own queue and ``concurrency`` threads, started with its first job.
A host that hangs or rate-limits ties up its own threads and nothing else; the
coordinator keeps scheduling the other hosts' work. A job is any callable; what it
returns (or raises) is handed to ``done`` on the worker thread, which must be cheap and
thread-safe (the engine puts it on its completion queue).

Jobs have a priority: a ``later`` job (reading a new artifact's creation time, which only
refines a lag's start) runs when no check of its host is waiting, so it never delays
a pass; a ``quick`` job (answered from the cache) has a lane of its own.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Job = Callable[[], None]
_NOW, _LATER, _STOP = 0, 1, 2  # a host's queue, lowest first; a stop runs what was queued


@dataclass(order=True, frozen=True, slots=True)
class _Queued:
    priority: int
    seq: int
    job: Job | None = field(compare=False)


@dataclass
class _Host:
    jobs: queue.PriorityQueue[_Queued] = field(default_factory=queue.PriorityQueue)
    quick: queue.PriorityQueue[_Queued] = field(default_factory=queue.PriorityQueue)
    threads: list[threading.Thread] = field(default_factory=list)
    busy: int = 0  # approximate (no lock on the hot path): for diagnostics only


class HostWorkers:
    def __init__(self, concurrency: int, *, name: str = "observe") -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency
        self._name = name
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}
        self._stopped = False
        self._seq = itertools.count()

    def submit(self, host: str, job: Job, *, quick: bool = False, later: bool = False) -> None:
        """Queue ``job`` behind the other jobs of ``host``; never blocks. ``quick`` jobs
        (answered from the cache, mostly) have a lane of their own, so they run while the
        host's other threads wait on the network instead of queueing behind them;
        ``later`` jobs wait until no other job of the host is waiting."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._start(host)
        queued = _Queued(_LATER if later else _NOW, next(self._seq), job)
        (entry.quick if quick else entry.jobs).put(queued)

    def backlog(self) -> dict[str, tuple[int, int]]:
        """host -> (jobs waiting, jobs running)."""
        return {h: (e.jobs.qsize(), e.busy) for h, e in list(self._hosts.items())}

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            hosts = list(self._hosts.values())
        for entry in hosts:
            for _ in entry.threads:
                entry.jobs.put(_Queued(_STOP, next(self._seq), None))
                entry.quick.put(_Queued(_STOP, next(self._seq), None))
        deadline = time.monotonic() + timeout  # one wait for all: a hung host cannot stretch it
        for entry in hosts:
            for thread in entry.threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _start(self, host: str) -> _Host:
        """A host's threads start with its first job (hosts are few; threads idle cheaply)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("workers are stopped")
            entry = self._hosts.get(host)
            if entry is not None:
                return entry
            entry = _Host()
            lanes = [entry.jobs] * self._concurrency + [entry.quick]
            for i, lane in enumerate(lanes):
                thread = threading.Thread(target=self._work, args=(host, entry, lane),
                                          name=f"{self._name}-{host}-{i}", daemon=True)  # fmt: skip
                entry.threads.append(thread)
                thread.start()
            self._hosts[host] = entry
            return entry

    def _work(self, host: str, entry: _Host, lane: queue.PriorityQueue[_Queued]) -> None:
        while True:
            job = lane.get().job
            if job is None:
                return
            entry.busy += 1
            try:
                job()
            except Exception:  # a job reports its own failures; this is a bug
                log.exception("a job for %s failed unexpectedly", host)
            finally:
                entry.busy -= 1
