"""The workers' priorities: checks before ``later`` jobs, the quick lane past a busy host, and
a stop that runs what was queued. Every wait is on an event, bounded, never a guess."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from exporter.app.workers import HostWorkers

HOST = "registry.example"
WAIT = 10.0  # seconds: only a hang runs into it


class Ran:
    """The order jobs ran in; ``all_done`` once ``expected`` of them did."""

    def __init__(self, expected: int) -> None:
        self.order: list[str] = []
        self._lock = threading.Lock()
        self._expected = expected
        self.all_done = threading.Event()

    def job(self, name: str) -> Callable[[], None]:
        def run() -> None:
            with self._lock:
                self.order.append(name)
                if len(self.order) == self._expected:
                    self.all_done.set()

        return run


@contextmanager
def blocked_worker() -> Iterator[tuple[HostWorkers, threading.Event]]:
    """One worker for the host, held by a job until the event is set."""
    workers = HostWorkers(1)
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    workers.submit(HOST, hold)
    assert started.wait(WAIT)
    try:
        yield workers, release
    finally:
        release.set()
        workers.stop()


def test_checks_queued_after_later_jobs_still_run_first() -> None:
    ran = Ran(6)
    with blocked_worker() as (workers, release):
        for i in range(3):
            workers.submit(HOST, ran.job(f"later{i}"), later=True)
        for i in range(3):
            workers.submit(HOST, ran.job(f"check{i}"))
        release.set()
        assert ran.all_done.wait(WAIT)
    assert ran.order == ["check0", "check1", "check2", "later0", "later1", "later2"]


def test_quick_jobs_run_while_the_host_worker_is_blocked() -> None:
    ran = Ran(2)
    with blocked_worker() as (workers, _):
        workers.submit(HOST, ran.job("queued"))
        workers.submit(HOST, ran.job("quick0"), quick=True)
        workers.submit(HOST, ran.job("quick1"), quick=True)
        assert ran.all_done.wait(WAIT)  # the worker is still held: the quick lane ran them
        assert ran.order == ["quick0", "quick1"]
        assert workers.backlog()[HOST][0] == 1  # the check waits behind the held job
    assert ran.order == ["quick0", "quick1", "queued"]  # run before stop() returned


def test_stop_runs_what_was_queued() -> None:
    ran = Ran(4)
    workers = HostWorkers(1)
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    workers.submit(HOST, hold)
    assert started.wait(WAIT)
    workers.submit(HOST, ran.job("later"), later=True)
    workers.submit(HOST, ran.job("check0"))
    workers.submit(HOST, ran.job("check1"))
    workers.submit(HOST, ran.job("quick"), quick=True)

    def release_once_stop_queued() -> None:
        deadline = time.monotonic() + WAIT
        # three jobs queued, plus one stop for each of the host's two threads
        while workers.backlog()[HOST][0] < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        release.set()

    releaser = threading.Thread(target=release_once_stop_queued)
    releaser.start()
    workers.stop(timeout=WAIT)
    releaser.join(WAIT)
    assert ran.all_done.is_set()
    assert [name for name in ran.order if name != "quick"] == ["check0", "check1", "later"]
