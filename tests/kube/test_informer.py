"""The informer's event handling without a server, through its public methods and the
calls handed to it: ADDED/MODIFIED/DELETED, BOOKMARK, ERROR (410 and others), a 410 on the
watch call, relist and back-off accounting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from exporter.core.backoff import Backoff
from exporter.kube.discovery import Resource
from exporter.kube.informer import API_BACKOFF, Informer, KubeObserver, ListWatch

OCI = Resource("OCIRepository", "source.toolkit.fluxcd.io", "v1", "ocirepositories")
QUICK = Backoff(0.01, 0.01)

Page = Mapping[str, Any]
Events = Iterable[Mapping[str, Any]]


def obj(name: str, rv: str, **annotations: str) -> dict[str, Any]:
    return {
        "kind": "OCIRepository",
        "metadata": {
            "name": name, "namespace": "apps", "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                            **annotations},
        },
    }  # fmt: skip


def page(rv: str, *items: dict[str, Any]) -> Page:
    return {"items": list(items), "metadata": {"resourceVersion": rv}}


class Stream:
    def __init__(self, events: Events) -> None:
        self._events = events

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self._events)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class Calls:
    """The API server's side: each LIST and WATCH is answered by the test's functions and
    recorded (``calls``; ``versions``: the resourceVersion each watch starts from). A watch
    answered None ends the test: the informer is asked to stop, and that watch is empty."""

    def __init__(
        self, lists: Callable[[int], Page], watches: Callable[[int], Events | None]
    ) -> None:
        self.resource = OCI
        self.namespace: str | None = None
        self._lists = lists
        self._watches = watches
        self.calls: list[str] = []
        self.versions: list[str] = []
        self.ended = threading.Event()
        self.stop: Callable[[], None] = lambda: None

    def end(self) -> None:
        self.stop()
        self.ended.set()

    def list(self, continue_token: str | None) -> Page:
        self.calls.append("list")
        return self._lists(self.calls.count("list"))

    def watch(self, resource_version: str) -> Stream:
        self.calls.append("watch")
        self.versions.append(resource_version)
        events = self._watches(self.calls.count("watch"))
        if events is None:
            self.end()
        return Stream(events or [])


class Observer:
    def __init__(self) -> None:
        self.lists = 0
        self.failures = 0

    def kube_listed(self, resource: str) -> None:
        self.lists += 1

    def kube_failed(self, resource: str) -> None:
        self.failures += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def informer(
    calls: Calls,
    events: list[tuple[str, str]] | None = None,
    observer: KubeObserver | None = None,
    clock: Callable[[], float] = time.monotonic,
    backoff: Backoff = QUICK,
) -> Informer:
    seen = events if events is not None else []
    source: ListWatch = calls
    inf = Informer(
        source,
        lambda kind, _resource, o: seen.append((kind, o["metadata"]["name"])),
        observer=observer,
        clock=clock,
        backoff=backoff,
    )
    calls.stop = inf.signal_stop
    return inf


def run(inf: Informer, calls: Calls) -> None:
    """Start the informer; once the calls have ended the test, wait for its thread."""
    inf.start()
    try:
        assert calls.ended.wait(10)
    finally:
        inf.stop(5)


def test_events_update_the_copy_and_reach_the_handler() -> None:
    events: list[tuple[str, str]] = []
    clock = Clock()
    stream = [
        {"type": "ADDED", "object": obj("a", "5")},
        {"type": "MODIFIED", "object": obj("a", "6", x="1")},
        {"type": "ADDED", "object": obj("b", "7")},
        {"type": "DELETED", "object": obj("b", "8")},
    ]

    def watches(n: int) -> Events | None:
        clock.now += 290  # a full-length watch, ended by the server's timeout
        return stream if n == 1 else None

    calls = Calls(lambda _: page("1"), watches)
    inf = informer(calls, events, clock=clock)
    run(inf, calls)
    assert calls.versions == ["1", "8"]  # the next watch resumes after the last event
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "b")]
    (kept,) = inf.objects()
    assert kept["metadata"]["annotations"] == {"x": "1"}  # kubectl's copy dropped
    assert "managedFields" not in kept["metadata"]


def test_a_bookmark_moves_the_resource_version_only() -> None:
    events: list[tuple[str, str]] = []
    clock = Clock()
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}

    def watches(n: int) -> Events | None:
        clock.now += 290
        return [bookmark] if n == 1 else None

    calls = Calls(lambda _: page("1"), watches)
    inf = informer(calls, events, clock=clock)
    run(inf, calls)
    assert calls.versions == ["1", "42"]
    assert events == [] and inf.objects() == []


def test_errors_in_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    """An ERROR event with code 410 expires the version: listed again, no failure. Any
    other ERROR event fails the watch: counted, logged with its reason, watched again."""
    observer = Observer()

    def watches(n: int) -> Events | None:
        if n == 1:
            return [{"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}]
        if n == 2:
            return [{"type": "ERROR", "object": {"code": 403, "reason": "Forbidden"}}]
        return None

    calls = Calls(lambda n: page(str(n)), watches)
    caplog.set_level("INFO", logger="exporter.kube.informer")
    run(informer(calls, observer=observer), calls)
    assert calls.calls == ["list", "watch", "list", "watch", "watch"]
    assert calls.versions == ["1", "2", "2"]
    assert observer.lists == 2 and observer.failures == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "KubeError: watch error: Forbidden" in warnings[0]


def test_a_410_on_the_watch_call_lists_again_and_a_failure_backs_off() -> None:
    events: list[tuple[str, str]] = []
    observer = Observer()

    def lists(n: int) -> Page:
        return page(str(n), obj("a", "1") if n == 1 else obj("c", "9"))

    def watches(n: int) -> Events | None:
        if n == 1:
            raise ApiException(status=410, reason="Gone")
        if n == 2:
            raise ApiException(status=503, reason="Service Unavailable")
        calls.end()  # a failure while stopping is not one
        raise ApiException(status=500)

    calls = Calls(lists, watches)
    inf = informer(calls, events, observer)
    run(inf, calls)
    assert calls.calls[:3] == ["list", "watch", "list"]
    assert observer.lists == 2 and observer.failures == 1
    assert [o["metadata"]["name"] for o in inf.objects()] == ["c"]
    assert ("DELETED", "a") in events and ("ADDED", "c") in events
    assert inf.synced.is_set()


def test_a_cut_watch_and_a_410_after_it_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API server that goes away ends the watch early, with no error; when it comes back
    its watch cache has forgotten the resourceVersion: both are the outage, both counted."""
    observer = Observer()
    clock = Clock()

    def watches(n: int) -> Events | None:
        if n == 1:
            clock.now += 290  # a full-length watch, ended by the server's timeout
            return []
        if n == 2:
            clock.now += 3  # cut after 3 s
            return []
        if n == 3:
            raise ApiException(status=410, reason="Gone")
        return None

    calls = Calls(lambda _: page("1", obj("a", "1")), watches)
    caplog.set_level("INFO", logger="exporter.kube.informer")
    run(informer(calls, observer=observer, clock=clock), calls)
    assert observer.failures == 2 and observer.lists == 2
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lines == [
        "watch of ocirepositories in all namespaces was cut after 3s; resuming",
        "watch of ocirepositories in all namespaces resumed after an interruption but "
        "expired (410); listing again",
    ]


def test_a_watch_that_ends_at_once_is_resumed_after_a_back_off() -> None:
    observer = Observer()
    started: list[float] = []

    def watches(n: int) -> Events | None:
        started.append(time.monotonic())
        return [] if n == 1 else None  # at once: the fake clock never moves

    calls = Calls(lambda _: page("1"), watches)
    run(informer(calls, observer=observer, clock=Clock(), backoff=Backoff(0.2, 0.2)), calls)
    assert observer.failures == 1  # the cut, counted
    assert started[1] - started[0] >= 0.2 * 0.8  # the back-off, less its jitter


def test_failed_calls_back_off_from_one_second_doubling_to_a_minute() -> None:
    assert [API_BACKOFF.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
