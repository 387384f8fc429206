"""Our Events to Flux's notification-controller too, so that a Flux ``Alert`` routes them.

Flux's controllers record each Event with the API server and POST it, in Flux's format
(``exporter.flux.events``), to ``--events-addr``; this does the same for ours. The POST is
never made on the caller's thread: :meth:`FluxEvents.event` builds the payload and queues
it, and one thread sends the queue in order. The queue is bounded: when
notification-controller is slow or away, the oldest event is dropped for the newest
(counted, and said in a log line once per spell).

Each POST is made as fluxcd/pkg ``runtime/events`` (v0.110.1) makes it: to the address as
given, ``Content-Type: application/json``, a 5 s timeout, and up to 4 retries on a
connection failure or a 5xx answer (501 excepted), waiting 1 s doubling. A 429 is
notification-controller refusing a duplicate (same object, message and revision within its
``--rate-limit-interval``): not retried, not a failure. Another 4xx is not retried.

Log lines name the address by scheme, host and port only: a path or query may hold a token.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from exporter import __version__
from exporter.flux.events import event_metadata, flux_event
from exporter.kube.trigger import COMPONENT, ObjectRef
from exporter.model import Delivery

log = logging.getLogger(__name__)

CAPACITY = 256  # events waiting, at most
TIMEOUT = 5.0  # seconds per attempt (Flux's recorder: the same)
RETRIES = 4  # after the first attempt (go-retryablehttp's default, which Flux keeps)
FIRST_WAIT = 1.0  # seconds before the first retry, doubling


class FluxEventsObserver(Protocol):
    def flux_event(self, result: Delivery) -> None:
        """One event's fate."""
        ...


def shown_address(address: str) -> str:
    """``scheme://host[:port]``: no user, path or query (which may carry a secret)."""
    try:
        url = httpx.URL(address)
    except (httpx.InvalidURL, TypeError):
        return "(invalid address)"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


class FluxEvents:
    """An event sink (``exporter.app.actor.EventSink``) posting to notification-controller."""

    def __init__(
        self,
        address: str,
        *,
        instance: str,
        observer: FluxEventsObserver,
        capacity: int = CAPACITY,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        first_wait: float = FIRST_WAIT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._address = address
        self._shown = shown_address(address)
        self._instance = instance
        self._observer = observer
        self._retries = retries
        self._first_wait = first_wait
        self._clock = clock
        self._client = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"{COMPONENT}/{__version__}"},
        )
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._capacity = capacity
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._overflowing = False  # dropping since the queue was last empty (one log line)
        self._thread = threading.Thread(target=self._run, name="flux-events", daemon=True)
        self._thread.start()

    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        """Queue the event in Flux's format; never blocks (the oldest goes when full)."""
        r = ref.resource
        payload = flux_event(
            kind=r.kind,
            api_version=r.api_version,
            namespace=ref.namespace,
            name=ref.name,
            uid=ref.uid,
            resource_version=ref.resource_version,
            warning=warning,
            reason=reason,
            message=message,
            metadata=event_metadata(r.api_version, revision, ref.event_annotations),
            timestamp=self._clock(),
            controller=COMPONENT,
            instance=self._instance,
        )
        dropped, first = None, False
        with self._ready:
            if len(self._queue) >= self._capacity:
                dropped = self._queue.popleft()
                first = not self._overflowing
                self._overflowing = True
            self._queue.append(payload)
            self._ready.notify()
        if dropped is not None:
            self._observer.flux_event(Delivery.DROPPED)
            if first:
                log.warning("Flux events: %d waiting for %s, dropping the oldest (%s on %s)",
                            self._capacity, self._shown, dropped.get("reason"),
                            _named(dropped))  # fmt: skip

    def pending(self) -> int:
        with self._ready:
            return len(self._queue)

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued (each once more, no retry waits) for up to ``timeout``."""
        self._stopping.set()
        with self._ready:
            self._ready.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("Flux events: %d not sent to %s (stopping)", self.pending(), self._shown)
            return
        self._client.close()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping.is_set():
                    self._ready.wait()
                if not self._queue:
                    return  # stopping, and nothing left
                payload = self._queue.popleft()
                if not self._queue:
                    self._overflowing = False
            try:
                self._observer.flux_event(self._post(payload))
            except Exception:  # a bug: the next event must still go
                log.exception("Flux events: sending failed unexpectedly")
                self._observer.flux_event(Delivery.FAILED)

    def _post(self, payload: dict[str, Any]) -> Delivery:
        wait = self._first_wait
        for attempt in range(self._retries + 1):
            last = attempt == self._retries or self._stopping.is_set()
            try:
                response = self._client.post(self._address, json=payload)
            except httpx.HTTPError as exc:  # no answer: connection, timeout, protocol
                failure = type(exc).__name__
            else:
                status = response.status_code
                if status < 300:
                    return Delivery.SENT
                if status == 429:
                    log.debug("Flux events: %s on %s is a duplicate for %s", payload["reason"],
                              _named(payload), self._shown)  # fmt: skip
                    return Delivery.DUPLICATE
                failure = f"HTTP {status}"
                if status < 500 or status == 501:
                    last = True
            if last:
                log.warning("Flux events: %s on %s not delivered to %s: %s (%d attempts)",
                            payload["reason"], _named(payload), self._shown, failure,
                            attempt + 1)  # fmt: skip
                return Delivery.FAILED
            if self._stopping.wait(wait):
                continue  # stopping: one last attempt, at once
            wait *= 2
        return Delivery.FAILED  # not reached: the last attempt returns


def _named(payload: dict[str, Any]) -> str:
    ref = payload.get("involvedObject") or {}
    return f"{ref.get('kind')} {ref.get('namespace')}/{ref.get('name')}"
