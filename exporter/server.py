"""HTTP endpoints: /metrics (Prometheus), /healthz (checks make progress), /readyz (lists
done, first full check done).

A scrape serves the per-target families as already-rendered bytes (``targets``, gzip
when the scraper accepts it) followed by the small self-instrumentation registry,
rendered at most once per ``LIVE_TTL`` and shared by concurrent scrapes: no I/O, no
registry or API call, nothing proportional to the number of targets computed. The format
is negotiated (``Accept``): OpenMetrics 1.0.0 when the scraper prefers it, as Prometheus
does, else the text format 0.0.4; both are written by prometheus_client's own functions,
and neither carries ``_created`` series.

The port is reachable by anything in the cluster, so clients are not trusted to be quick
or polite. One thread owns every socket: it accepts, reads request heads and writes
answers without blocking, so an idle, slow or vanished client holds a file descriptor,
never a thread; a few workers compute the answers. Limits: a request head must arrive
within ``head_timeout`` and fit in ``MAX_HEAD`` bytes; an answer must be taken within
``SEND_TIMEOUT``; at most ``max_connections`` are open, and when full the connection
that has waited longest for its head makes room (or, if every one is being answered,
the newcomer gets a 503 at once). Clients that go away are worth a debug line only.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from enum import Enum

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # seconds from connect to a complete request head
SEND_TIMEOUT = 60.0  # seconds for a client to take the whole answer
MAX_HEAD = 16 * 1024
MAX_CONNECTIONS = 512
WORKERS = 4
LIVE_TTL = 1.0  # seconds a rendering of the live registry is reused
SEND_PARTS = 64  # parts of an answer handed to one sendmsg (well under IOV_MAX)

_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TEXT = "text/plain; charset=utf-8"


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    out: list[memoryview] = field(default_factory=list)


class Format(Enum):
    """An exposition format /metrics can answer in; prometheus_client writes both."""

    TEXT = "text"  # text format 0.0.4
    OPENMETRICS = "openmetrics"  # OpenMetrics 1.0.0

    @property
    def content_type(self) -> str:
        if self is Format.OPENMETRICS:
            return openmetrics.CONTENT_TYPE_LATEST
        return CONTENT_TYPE_PLAIN_0_0_4

    @property
    def trailer(self) -> bytes:
        """What ends a whole exposition (and so appears once, at the very end)."""
        return b"# EOF\n" if self is Format.OPENMETRICS else b""

    def render(self, collector: Collector) -> bytes:
        if self is Format.OPENMETRICS:
            return bytes(openmetrics.generate_latest(collector))  # type: ignore[no-untyped-call]
        return generate_latest(collector)


def negotiate(accept: str) -> Format:
    """The format an ``Accept`` header prefers: OpenMetrics 1.0.0 (``version=1.0.0`` or no
    version) when it ranks first by q-value (the first listed of equals), else text."""
    best, best_q = Format.TEXT, 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q, version = 1.0, ""
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key == "version":
                version = value
        media = media.lower()
        if media == "application/openmetrics-text" and version in ("", "1.0.0"):
            offered = Format.OPENMETRICS
        elif media in ("text/plain", "text/*", "*/*"):
            offered = Format.TEXT
        else:
            continue
        if q > best_q:
            best, best_q = offered, q
    return best


class _WithoutCreated(Collector):
    """A registry's families without their ``_created`` samples: creation times of
    counters and histograms are noise on a dashboard and a series each."""

    def __init__(self, registry: Collector) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class _LiveCache:
    """One registry rendered per format, plain and gzipped, reused for ``ttl`` seconds."""

    def __init__(self, registry: Collector, ttl: float) -> None:
        self._registry = _WithoutCreated(registry)
        self._ttl = ttl
        self._lock = threading.Lock()
        self._rendered: dict[Format, tuple[float, bytes, bytes]] = {}

    def get(self, fmt: Format, gzipped: bool) -> bytes:
        with self._lock:  # concurrent misses wait for one rendering
            now = time.monotonic()
            rendered = self._rendered.get(fmt)
            if rendered is None or now - rendered[0] >= self._ttl:
                text = fmt.render(self._registry)
                rendered = self._rendered[fmt] = (now, text, gzip.compress(text, 1))
            return rendered[2] if gzipped else rendered[1]


class Endpoints:
    """The HTTP server; ``start`` serves on a thread of its own, ``stop`` closes everything."""

    def __init__(
        self,
        address: tuple[str, int],
        registry: Collector,
        targets: Callable[[Format, bool], Sequence[bytes]],
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        *,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        self.live = _LiveCache(registry, LIVE_TTL)
        self.targets = targets
        self.healthy = healthy
        self.ready = ready
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        both = address[0] == "::" and socket.has_dualstack_ipv6()  # as Go's [::]: IPv4 too
        self._listener = socket.create_server(
            address, family=family, backlog=1024, dualstack_ipv6=both
        )
        self._listener.setblocking(False)
        self.server_address: tuple[str, int] = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._waiting: dict[_Conn, None] = {}  # waiting for their head, oldest first
        self._sending: dict[_Conn, None] = {}  # being written, oldest first
        self._open = 0
        self._accept_paused_until = 0.0  # out of file descriptors: accept again from then
        self._accept_warned = -math.inf
        self._jobs: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Conn, list[bytes]]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name="http", daemon=True)] + [
            threading.Thread(target=self._work, name=f"http-{i}", daemon=True)
            for i in range(WORKERS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for _ in range(WORKERS):
            self._jobs.put(None)
        self._wake()
        deadline = time.monotonic() + 3.0  # one wait for all the threads
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        while not self._done.empty():  # answered after the loop ended
            self._done.get_nowait()[0].sock.close()
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    # -- the socket loop ---------------------------------------------------------------

    def _loop(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._next_timeout()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._take_answers()
                    elif key.data is not None:
                        conn: _Conn = key.data
                        (self._read if conn in self._waiting else self._send)(conn)
                now = time.monotonic()
                self._expire(now)
                if self._accept_paused_until and now >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    self._selector.register(self._listener, selectors.EVENT_READ)
        finally:
            for conn in (*self._waiting, *self._sending):
                self._close(conn)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [next(iter(d)).deadline for d in (self._waiting, self._sending) if d]
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min([*deadlines, now + 1.0]) - now)

    def _accept(self) -> None:
        for _ in range(64):  # a burst, then let the other sockets have a turn
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors
                if self._waiting:  # the longest idle connection makes room
                    self._close(next(iter(self._waiting)))
                    continue
                now = time.monotonic()  # serve the others, try again in a moment
                if now - self._accept_warned >= 60:
                    log.warning("cannot accept connections on the metrics port: %s", exc)
                    self._accept_warned = now
                self._selector.unregister(self._listener)
                self._accept_paused_until = now + 0.1
                return
            sock.setblocking(False)
            if self._open >= self.max_connections:
                if not self._waiting:
                    _refuse(sock)
                    continue
                oldest = next(iter(self._waiting))
                log.debug("closing %s to make room: connections are full", oldest.peer)
                self._close(oldest)
            conn = _Conn(sock, f"{peer[0]}:{peer[1]}", time.monotonic() + self.head_timeout)
            self._open += 1
            self._waiting[conn] = None
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, exc)
            return
        if not data:
            self._close(conn)
            return
        conn.head += data
        end = _head_end(conn.head)
        if end is None and len(conn.head) <= MAX_HEAD:
            return
        del self._waiting[conn]
        self._selector.unregister(conn.sock)
        if end is None or end > MAX_HEAD:
            self._answer(conn, _response(431, b"request head too large\n", _TEXT))
        else:
            self._jobs.put(conn)

    def _take_answers(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                conn, parts = self._done.get_nowait()
            except queue.Empty:
                return
            self._answer(conn, parts)

    def _answer(self, conn: _Conn, parts: list[bytes]) -> None:
        conn.out = [memoryview(p) for p in parts if p]
        conn.deadline = time.monotonic() + SEND_TIMEOUT
        self._sending[conn] = None
        self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
        self._send(conn)

    def _send(self, conn: _Conn) -> None:
        try:
            while conn.out:
                # the parts in one call (a system call, and the GIL, taken once)
                sent = conn.sock.sendmsg(conn.out[:SEND_PARTS])
                while sent:
                    first = conn.out[0]
                    if sent < len(first):
                        conn.out[0] = first[sent:]
                        break
                    sent -= len(first)
                    conn.out.pop(0)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, exc)
            return
        self._close(conn)

    def _expire(self, now: float) -> None:
        for pending, why in ((self._waiting, "no request"), (self._sending, "answer not taken")):
            while pending:
                oldest = next(iter(pending))
                if oldest.deadline > now:
                    break
                log.debug("closing %s: %s in the time allowed", oldest.peer, why)
                self._close(oldest)

    def _drop(self, conn: _Conn, exc: OSError) -> None:
        log.debug("client %s went away: %s", conn.peer, exc.__class__.__name__)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self._waiting.pop(conn, 0) is None or self._sending.pop(conn, 0) is None:
            self._selector.unregister(conn.sock)
        self._open -= 1
        conn.out = []
        with contextlib.suppress(OSError):
            conn.sock.recv(65536)  # unread input would turn the close into a reset
        conn.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a wake-up is already pending, or the loop is gone
            self._wake_w.send(b"\0")

    # -- the workers -------------------------------------------------------------------

    def _work(self) -> None:
        while (conn := self._jobs.get()) is not None:
            try:
                parts = self._respond(bytes(conn.head))
            except Exception:
                log.exception("answering %s failed", conn.peer)
                parts = _response(500, b"internal error\n", _TEXT)
            self._done.put((conn, parts))
            self._wake()

    def metrics_body(self, fmt: Format, gzipped: bool) -> list[bytes]:
        """The parts of a /metrics answer. The targets' are sent as rendered, never copied;
        two gzip members one after the other make one valid gzip stream. The live part
        comes last: it carries OpenMetrics' closing ``# EOF``."""
        return [*self.targets(fmt, gzipped), self.live.get(fmt, gzipped)]

    def _respond(self, head: bytes) -> list[bytes]:
        request = _parse_head(head)
        if request is None:
            return _response(400, b"bad request\n", _TEXT)
        method, target, headers = request
        if method not in ("GET", "HEAD"):
            return _response(405, b"only GET\n", _TEXT, {"Allow": "GET, HEAD"})
        path = target.split("?", 1)[0]
        if path == "/metrics":
            fmt = negotiate(headers.get("accept", ""))
            zipped = _accepts_gzip(headers.get("accept-encoding", ""))
            parts = self.metrics_body(fmt, zipped)
            extra = {"Vary": "Accept, Accept-Encoding"}
            if zipped:
                extra["Content-Encoding"] = "gzip"
            answer = _response(200, parts, fmt.content_type, extra)
        elif path in ("/healthz", "/readyz"):
            ok, why = (self.healthy if path == "/healthz" else self.ready)()
            answer = _response(200 if ok else 503, (why + "\n").encode(), _TEXT)
        else:
            answer = _response(404, b"not found: try /metrics, /healthz or /readyz\n", _TEXT)
        return answer[:1] if method == "HEAD" else answer


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip


def _response(
    code: int,
    body: bytes | list[bytes],
    content_type: str,
    extra: dict[str, str] | None = None,
) -> list[bytes]:
    """Status line and headers as the first part, then the body's parts untouched."""
    parts = body if isinstance(body, list) else [body]
    fields = {
        "Content-Type": content_type,
        "Content-Length": str(sum(len(p) for p in parts)),
        "Connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {code} {_REASONS[code]}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items()
    )
    return [(head + "\r\n").encode("latin-1"), *parts]


def _head_end(data: bytearray) -> int | None:
    """Where the head ends (the blank line; bare LF tolerated), or None if not yet."""
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else None


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Method, target and lower-cased header fields; None when it is not HTTP/1.x."""
    line, _, rest = head.partition(b"\n")
    words = line.rstrip(b"\r").decode("latin-1").split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/1.") or not words[1].startswith("/"):
        return None
    message = BytesHeaderParser().parsebytes(rest)
    return words[0], words[1], {k.lower(): str(v) for k, v in message.items()}


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            q = params.strip().lower().removeprefix("q=").strip()
            return not q or q.strip("0.") != ""
    return False


def _refuse(sock: socket.socket) -> None:
    """A 503 without a thread: one non-blocking send of a small answer, then close."""
    with contextlib.suppress(OSError):
        sock.send(_REFUSED)
        sock.recv(65536)  # a request already here, read, lets the close be a FIN, not a reset
    log.debug("refused a connection: every slot is busy answering")
    sock.close()
