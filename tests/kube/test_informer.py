"""The informer's event handling without a server: ADDED/MODIFIED/DELETED, BOOKMARK,
ERROR (410 and others), a 410 on the watch call, relist and back-off accounting."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from exporter.kube.discovery import Resource
from exporter.kube.errors import KubeError
from exporter.kube.informer import Informer, _Gone

OCI = Resource("OCIRepository", "source.toolkit.fluxcd.io", "v1", "ocirepositories")


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


class Observer:
    def __init__(self) -> None:
        self.lists = 0
        self.failures = 0

    def kube_listed(self, resource: str) -> None:
        self.lists += 1

    def kube_failed(self, resource: str) -> None:
        self.failures += 1


def informer(events: list[tuple[str, str]], observer: Observer | None = None) -> Informer:
    return Informer(
        k8s.ApiClient(),
        OCI,
        None,
        lambda kind, _resource, o: events.append((kind, o["metadata"]["name"])),
        observer=observer,
    )


def test_events_update_the_copy_and_reach_the_handler() -> None:
    events: list[tuple[str, str]] = []
    inf = informer(events)
    rv = inf._apply({"type": "ADDED", "object": obj("a", "5")}, "1")
    rv = inf._apply({"type": "MODIFIED", "object": obj("a", "6", x="1")}, rv)
    rv = inf._apply({"type": "ADDED", "object": obj("b", "7")}, rv)
    rv = inf._apply({"type": "DELETED", "object": obj("b", "8")}, rv)
    assert rv == "8"
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "b")]
    (kept,) = inf.objects()
    assert kept["metadata"]["annotations"] == {"x": "1"}  # kubectl's copy dropped
    assert "managedFields" not in kept["metadata"]


def test_a_bookmark_moves_the_resource_version_only() -> None:
    events: list[tuple[str, str]] = []
    inf = informer(events)
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}
    assert inf._apply(bookmark, "1") == "42"
    assert events == [] and inf.objects() == []


def test_errors_in_the_stream() -> None:
    inf = informer([])
    with pytest.raises(_Gone):
        inf._apply({"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}, "1")
    with pytest.raises(KubeError, match="Forbidden"):
        inf._apply({"type": "ERROR", "object": {"code": 403, "reason": "Forbidden"}}, "1")


def test_a_410_on_the_watch_call_lists_again_and_a_failure_backs_off() -> None:
    events: list[tuple[str, str]] = []
    observer = Observer()
    inf = informer(events, observer)
    calls: list[str] = []
    done = threading.Event()

    def call(**kwargs: Any) -> Any:
        if not kwargs.get("watch"):
            calls.append("list")
            n = len([c for c in calls if c == "list"])
            items = [obj("a", "1")] if n == 1 else [obj("c", "9")]
            return {"items": items, "metadata": {"resourceVersion": str(n)}}
        calls.append("watch")
        watches = calls.count("watch")
        if watches == 1:
            raise ApiException(status=410, reason="Gone")
        if watches == 2:
            raise ApiException(status=503, reason="Service Unavailable")
        done.set()
        inf._stop.set()
        raise ApiException(status=500)

    inf._call = call  # type: ignore[method-assign]
    inf._backoff_max = 0.01
    thread = threading.Thread(target=inf._run, daemon=True)
    thread.start()
    assert done.wait(10)
    thread.join(5)
    assert calls[:3] == ["list", "watch", "list"]
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
    now = [0.0]
    inf = Informer(k8s.ApiClient(), OCI, None, lambda *_: None, observer=observer,
                   clock=lambda: now[0])  # fmt: skip
    watches: list[str] = []

    def call(**kwargs: Any) -> Any:
        return {"items": [obj("a", "1")], "metadata": {"resourceVersion": "1"}}

    def watch(resource_version: str) -> str:
        rv = resource_version
        watches.append(rv)
        if len(watches) == 1:
            now[0] += 290  # a full-length watch, ended by the server's timeout
            return rv
        if len(watches) == 2:
            now[0] += 3  # cut after 3 s
            return rv
        if len(watches) == 3:
            raise _Gone()
        inf._stop.set()
        return rv

    inf._call = call  # type: ignore[method-assign]
    inf._watch = watch  # type: ignore[method-assign]
    caplog.set_level("INFO", logger="exporter.kube.informer")
    inf._run()
    assert observer.failures == 2 and observer.lists == 2
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lines == [
        "watch of ocirepositories in all namespaces was cut after 3s; resuming",
        "watch of ocirepositories in all namespaces resumed after an interruption but "
        "expired (410); listing again",
    ]
