"""Events posted to notification-controller, against a real HTTP server on loopback: the
request Flux's recorder makes, its retries, its timeout, a duplicate, and a full queue
that drops the oldest without ever blocking the caller."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devenv.ports import free_port
from exporter.kube.discovery import Resource
from exporter.kube.flux_events import FluxEvents, shown_address
from exporter.kube.trigger import ObjectRef
from exporter.model import Delivery

REVISION = "v1.1.0@sha256:" + "a" * 64
REF = ObjectRef(
    Resource("OCIRepository", "source.toolkit.fluxcd.io", "v1", "ocirepositories"),
    "apps",
    "web",
    uid="0d1c5c4e-1111-2222-3333-444455556666",
    resource_version="42",
    event_annotations=(("event.toolkit.fluxcd.io/cluster", "prod"),),
)


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, delay), then 202; keeps what came."""

    url: str
    script: list[tuple[int, float]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> tuple[int, float]:
        with self.lock:
            return self.script.pop(0) if self.script else (202, 0.0)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} requests, not {count}"
            time.sleep(0.01)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server: ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.gate.wait(10)
            status, delay = state.answer()
            with state.lock:
                state.requests.append((self.path, dict(self.headers), body))
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Receiver(f"http://127.0.0.1:{server.server_port}/")
    state.gate.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()


@dataclass
class Counted:
    results: list[Delivery] = field(default_factory=list)

    def flux_event(self, result: Delivery) -> None:
        self.results.append(result)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.results) < count:
            assert time.monotonic() < deadline, f"results so far: {self.results}"
            time.sleep(0.01)
        return self.results


def sender(url: str, observer: Counted, **options: Any) -> FluxEvents:
    given: dict[str, Any] = {"first_wait": 0.01, "clock": lambda: 1_786_000_000.0}
    return FluxEvents(url, instance="flux-oci-trigger-abc12", observer=observer,
                      **{**given, **options})  # fmt: skip


def test_an_event_is_posted_as_fluxs_recorder_posts_it(receiver: Receiver) -> None:
    counted = Counted()
    events = sender(receiver.url, counted)
    try:
        events.event(REF, "ReconcileRequested", "new artifact; reconciliation requested",
                     revision=REVISION)  # fmt: skip
        assert counted.wait_for(1) == [Delivery.SENT]
    finally:
        events.stop()
    ((path, headers, body),) = receiver.requests
    assert path == "/"
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "involvedObject": {
            "kind": "OCIRepository",
            "namespace": "apps",
            "name": "web",
            "uid": "0d1c5c4e-1111-2222-3333-444455556666",
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "resourceVersion": "42",
        },
        "severity": "info",
        "timestamp": "2026-08-06T07:06:40Z",
        "message": "new artifact; reconciliation requested",
        "reason": "ReconcileRequested",
        "metadata": {
            "event.toolkit.fluxcd.io/cluster": "prod",
            "source.toolkit.fluxcd.io/revision": REVISION,
        },
        "reportingController": "flux-oci-trigger",
        "reportingInstance": "flux-oci-trigger-abc12",
    }


def test_a_5xx_is_retried_with_doubling_waits_until_accepted(receiver: Receiver) -> None:
    receiver.script = [(503, 0.0), (500, 0.0), (502, 0.0)]
    counted = Counted()
    events = sender(receiver.url, counted, first_wait=0.05)
    try:
        started = time.monotonic()
        events.event(REF, "NoMatchingTag", "no tag matches", warning=True)
        assert counted.wait_for(1) == [Delivery.SENT]
        assert time.monotonic() - started >= 0.05 + 0.1 + 0.2  # 1 s, 2 s, 4 s in service
    finally:
        events.stop()
    assert len(receiver.requests) == 4
    assert {r[2]["severity"] for r in receiver.requests} == {"error"}


def test_it_gives_up_after_four_retries_and_says_so_without_the_addresss_secrets(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [(500, 0.0)] * 10
    counted = Counted()
    address = receiver.url.replace("http://", "http://user:hunter2@") + "hook?token=s3cret"
    events = sender(address, counted)
    try:
        with caplog.at_level(logging.WARNING, logger="exporter.kube.flux_events"):
            events.event(REF, "ReconcileStuck", "handled, not applied", warning=True)
            assert counted.wait_for(1) == [Delivery.FAILED]
    finally:
        events.stop()
    assert len(receiver.requests) == 5
    assert receiver.requests[0][0] == "/hook?token=s3cret"
    (line,) = [r.getMessage() for r in caplog.records]
    assert "ReconcileStuck on OCIRepository apps/web" in line and "HTTP 500" in line
    assert "5 attempts" in line
    assert "s3cret" not in line and "hunter2" not in line and "hook" not in line


@pytest.mark.parametrize(("status", "result"), [(429, Delivery.DUPLICATE), (400, Delivery.FAILED),
                                                (501, Delivery.FAILED)])  # fmt: skip
def test_a_duplicate_and_a_refusal_are_not_retried(
    receiver: Receiver, status: int, result: Delivery
) -> None:
    receiver.script = [(status, 0.0)]
    counted = Counted()
    events = sender(receiver.url, counted)
    try:
        events.event(REF, "ReconcileRequested", "again", revision=REVISION)
        assert counted.wait_for(1) == [result]
    finally:
        events.stop()
    assert len(receiver.requests) == 1


def test_a_slow_answer_times_out_and_is_tried_again(receiver: Receiver) -> None:
    receiver.script = [(202, 2.0)]
    counted = Counted()
    events = sender(receiver.url, counted, timeout=0.3)
    try:
        started = time.monotonic()
        events.event(REF, "ReconcileRequested", "slow", revision=REVISION)
        assert counted.wait_for(1) == [Delivery.SENT]
        assert time.monotonic() - started < 1.5  # the second attempt, not the slow answer
    finally:
        events.stop()
    receiver.wait_for(2)


def test_nobody_listening_is_a_failure_after_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    counted = Counted()
    events = sender(f"http://127.0.0.1:{free_port()}/", counted)
    try:
        with caplog.at_level(logging.WARNING, logger="exporter.kube.flux_events"):
            events.event(REF, "ReconcileRequested", "nobody", revision=REVISION)
            assert counted.wait_for(1) == [Delivery.FAILED]
    finally:
        events.stop()
    assert "ConnectError (5 attempts)" in caplog.records[0].getMessage()


def test_a_full_queue_drops_the_oldest_and_never_blocks_the_caller(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.gate.clear()  # the first POST hangs until released
    counted = Counted()
    events = sender(receiver.url, counted, capacity=2)
    try:
        with caplog.at_level(logging.WARNING, logger="exporter.kube.flux_events"):
            events.event(REF, "e1", "first")
            deadline = time.monotonic() + 5
            while events.pending():  # e1 taken by the sender, its POST waiting
                assert time.monotonic() < deadline
                time.sleep(0.01)
            started = time.monotonic()
            for n in range(2, 7):
                events.event(REF, f"e{n}", "more")
            assert time.monotonic() - started < 0.5
            assert counted.results == [Delivery.DROPPED] * 3  # e2, e3, e4 went
            assert events.pending() == 2
        receiver.gate.set()
        assert sorted(counted.wait_for(6)) == sorted([Delivery.DROPPED] * 3 + [Delivery.SENT] * 3)
    finally:
        events.stop()
    assert [r[2]["reason"] for r in receiver.requests] == ["e1", "e5", "e6"]
    (line,) = [r.getMessage() for r in caplog.records]  # one line per spell
    assert "dropping the oldest (e2 on OCIRepository apps/web)" in line


def test_stopping_sends_what_is_queued_without_waiting_to_retry(receiver: Receiver) -> None:
    receiver.script = [(503, 0.0)]
    counted = Counted()
    events = sender(receiver.url, counted, first_wait=30.0)
    events.event(REF, "ReconcileRequested", "one", revision=REVISION)
    events.event(REF, "ReconcileRequested", "two", revision=REVISION)
    receiver.wait_for(1)  # the first failed: its retry waits 30 s, unless stopping
    started = time.monotonic()
    events.stop(timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert counted.results == [Delivery.SENT, Delivery.SENT]
    assert [r[2]["message"] for r in receiver.requests] == ["one", "one", "two"]


def test_an_address_is_shown_by_scheme_host_and_port_only() -> None:
    assert shown_address("https://u:p@nc.flux-system.svc:9090/x?token=t") == (
        "https://nc.flux-system.svc:9090"
    )
    assert shown_address("http://notification-controller.flux-system.svc.cluster.local./") == (
        "http://notification-controller.flux-system.svc.cluster.local."
    )
