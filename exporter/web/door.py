"""One socket loop per port, with limits, and a few workers: every port the exporter opens.

Clients are not trusted to be quick, polite or few: /metrics is reachable by anything in
the cluster, the events port by the internet. One thread owns every socket: it accepts,
reads request heads and bodies and writes answers without blocking, so an idle, slow or
vanished client holds a file descriptor, never a thread; ``Limits.workers`` threads compute
the answers. Per port (``Limits``):

- at most ``max_connections`` open; when full, the oldest connection that has not sent
  its head is closed to make room (a slowloris gives way to the newcomer; a request that
  passed the head's checks goes last), or, if every one is being answered, the newcomer
  gets a 503 at once;
- a head must arrive within ``head_timeout`` and fit in ``max_head`` bytes and
  ``max_header_lines`` lines; the whole request, body included, within
  ``request_timeout`` (a trickled body is cut off);
- bodies over ``small_body`` reserve their declared length from ``max_buffered``: beyond
  it a newcomer gets a 503 instead of the port's memory, while small ones (every real push
  event) are never held back by large ones;
- ``Application.admit`` sees the head first, on the loop thread: it answers at once
  (a refusal: unknown path, a missing or wrong secret, a body over the cap) or asks for
  the body, which is read only then, and never beyond ``max_body``;
- an answer must be taken within ``send_timeout``;
- the listen backlog is ``backlog``, accepted in bursts, so a storm of connections does
  not make a legitimate client wait in the kernel's queue.

Each failure of a client (reset, timeout, garbage) is worth a debug line at most; an
application error is one log line and a 500, never a traceback on stderr.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.web.wire import Head, Request, head_end, parse_head, text

log = logging.getLogger(__name__)
SEND_PARTS = 64  # parts of an answer handed to one sendmsg (well under IOV_MAX)
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

Admission = list[bytes] | int  # an answer now, or the number of body bytes to read first


class Application(Protocol):
    def admit(self, head: Head, peer: str) -> Admission:
        """On the loop thread, before any body is read: cheap checks on the head only."""
        ...

    def respond(self, request: Request) -> list[bytes]:
        """On a worker: the whole answer (status line and headers first)."""
        ...


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512
    head_timeout: float = 10.0  # seconds from connect to a complete head
    request_timeout: float = 30.0  # seconds from connect to a complete body
    send_timeout: float = 60.0  # seconds for the client to take the whole answer
    max_head: int = 16 * 1024
    max_body: int = 0  # bytes; admit may ask for no more
    workers: int = 4
    backlog: int = 1024
    max_buffered: int = 64 << 20  # large bodies' bytes held at once (beyond it a 503)
    small_body: int = 64 << 10  # bodies up to this size need no budget: a push event never
    # waits for large ones (at most max_connections x small_body bytes)
    max_header_lines: int = 200  # more is refused (431) before anything parses them


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    opened: float
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    head: Head | None = None
    body_start: int = 0
    body_length: int = 0
    received: float = 0.0
    reserved: int = 0  # body bytes counted against Limits.max_buffered
    closed: bool = False
    out: list[memoryview] = field(default_factory=list)


class FrontDoor:
    """``start`` serves on threads of its own; ``stop`` closes everything within seconds."""

    def __init__(
        self,
        address: tuple[str, int],
        app: Application,
        limits: Limits,
        *,
        name: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.limits = limits
        self.name = name
        self._wall_clock = wall_clock
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        both = address[0] == "::" and socket.has_dualstack_ipv6()  # as Go's [::]: IPv4 too
        self._listener = socket.create_server(
            address, family=family, backlog=limits.backlog, dualstack_ipv6=both
        )
        self._listener.setblocking(False)
        self.server_address: tuple[str, int] = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._receiving: dict[_Conn, None] = {}  # reading head or body, oldest first
        self._sending: dict[_Conn, None] = {}  # being written, oldest first
        self._open = 0
        self._buffered = 0  # body bytes reserved by admitted requests (Limits.max_buffered)
        self._next_expiry = math.inf
        self._accept_paused_until = 0.0  # out of file descriptors: accept again from then
        self._accept_warned = -math.inf
        self._budget = threading.Lock()
        self._jobs: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Conn, list[bytes]]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=name, daemon=True)] + [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(limits.workers)
        ]

    @property
    def open_connections(self) -> int:
        return self._open

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for _ in range(self.limits.workers):
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
                        if conn in self._receiving:
                            self._read(conn)
                        elif conn in self._sending:
                            self._send(conn)
                        # else: closed earlier in this batch (evicted to make room)
                now = time.monotonic()
                self._expire(now)
                if self._accept_paused_until and now >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    self._selector.register(self._listener, selectors.EVENT_READ)
        except Exception:  # a bug here must not end the port silently
            log.exception("%s: the socket loop failed", self.name)
        finally:
            for conn in (*self._receiving, *self._sending):
                self._close(conn)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_expiry, now + 1.0]
        if self._sending:
            deadlines.append(next(iter(self._sending)).deadline)
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min(deadlines) - now)

    def _accept(self) -> None:
        for _ in range(256):  # a burst, then let the other sockets have a turn
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    log.debug("accept failed: %s", exc.__class__.__name__)  # the client's doing
                    continue
                if self._receiving:  # out of file descriptors: the idlest makes room
                    self._close(self._idlest())
                    continue
                now = time.monotonic()  # serve the others, try again in a moment
                if now - self._accept_warned >= 60:
                    log.warning("cannot accept connections on the %s port: %s", self.name, exc)
                    self._accept_warned = now
                self._selector.unregister(self._listener)
                self._accept_paused_until = now + 0.1
                return
            sock.setblocking(False)
            if self._open >= self.limits.max_connections:
                if not self._receiving:
                    _refuse(sock)
                    continue
                oldest = self._idlest()
                log.debug("closing %s to make room: connections are full", oldest.peer)
                self._close(oldest)
            now = time.monotonic()
            deadline = now + min(self.limits.head_timeout, self.limits.request_timeout)
            conn = _Conn(sock, _show(peer), now, deadline)
            self._open += 1
            self._receiving[conn] = None
            self._next_expiry = min(self._next_expiry, deadline)
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _idlest(self) -> _Conn:
        """The connection to close for a newcomer: the oldest that has not even sent its
        head (a request that passed the head's checks and is sending its body goes last)."""
        for conn in self._receiving:
            if conn.head is None:
                return conn
        return next(iter(self._receiving))

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, exc)
            return
        if not data:
            self._close(conn)
            return
        conn.data += data
        if conn.head is None and not self._take_head(conn):
            return
        if len(conn.data) - conn.body_start < conn.body_length:
            return
        del self._receiving[conn]
        self._selector.unregister(conn.sock)
        self._jobs.put(conn)

    def _take_head(self, conn: _Conn) -> bool:
        """Parse and admit the head once complete; False while more is needed or when the
        connection has been answered."""
        ends = head_end(conn.data)
        if ends is None:
            if len(conn.data) > self.limits.max_head:
                self._answer_now(conn, text(431, "request head too large"))
            return False
        end, body_start = ends
        too_many = conn.data.count(b"\n", 0, end) > self.limits.max_header_lines
        if end > self.limits.max_head or too_many:
            self._answer_now(conn, text(431, "request head too large"))
            return False
        head = parse_head(bytes(conn.data[:end]))
        if head is None:
            self._answer_now(conn, text(400, "bad request"))
            return False
        try:
            admission = self.app.admit(head, conn.peer)
        except Exception:
            log.exception("%s: admitting a request from %s failed", self.name, conn.peer)
            admission = text(500, "internal error")
        if isinstance(admission, list):
            self._answer_now(conn, admission)
            return False
        if admission > self.limits.max_body:  # admit should have refused it
            self._answer_now(conn, text(413, "body too large"))
            return False
        if admission > self.limits.small_body:
            if self._buffered + admission > self.limits.max_buffered:
                log.debug("refusing %s: %d body bytes already held", conn.peer, self._buffered)
                self._answer_now(conn, text(503, "busy, try again"))
                return False
            conn.reserved = admission
            with self._budget:
                self._buffered += admission
        conn.head = head
        conn.received = self._wall_clock()
        conn.body_start = body_start
        conn.body_length = admission
        conn.deadline = conn.opened + self.limits.request_timeout
        self._next_expiry = min(self._next_expiry, conn.deadline)
        return True

    def _answer_now(self, conn: _Conn, parts: list[bytes]) -> None:
        del self._receiving[conn]
        self._selector.unregister(conn.sock)
        self._answer(conn, parts)

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
        conn.data = bytearray()
        conn.out = [memoryview(p) for p in parts if p]
        conn.deadline = time.monotonic() + self.limits.send_timeout
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
        while self._sending:
            oldest = next(iter(self._sending))
            if oldest.deadline > now:
                break
            log.debug("closing %s: answer not taken in the time allowed", oldest.peer)
            self._close(oldest)
        if now < self._next_expiry:
            return
        # heads and bodies have deadlines of their own: one scan, then wait for the next
        self._next_expiry = math.inf
        for conn in list(self._receiving):
            if conn.deadline <= now:
                what = "no request" if conn.head is None else "body incomplete"
                log.debug("closing %s: %s in the time allowed", conn.peer, what)
                self._close(conn)
            else:
                self._next_expiry = min(self._next_expiry, conn.deadline)

    def _drop(self, conn: _Conn, exc: OSError) -> None:
        log.debug("client %s went away: %s", conn.peer, exc.__class__.__name__)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._release(conn)
        if self._receiving.pop(conn, 0) is None or self._sending.pop(conn, 0) is None:
            self._selector.unregister(conn.sock)
        self._open -= 1
        conn.out = []
        conn.data = bytearray()
        with contextlib.suppress(OSError):
            conn.sock.recv(65536)  # unread input would turn the close into a reset
        conn.sock.close()

    def _release(self, conn: _Conn) -> None:
        with self._budget:  # workers release too
            self._buffered -= conn.reserved
            conn.reserved = 0

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a wake-up is already pending, or the loop is gone
            self._wake_w.send(b"\0")

    # -- the workers -------------------------------------------------------------------

    def _work(self) -> None:
        while (conn := self._jobs.get()) is not None:
            assert conn.head is not None
            body = bytes(conn.data[conn.body_start : conn.body_start + conn.body_length])
            conn.data = bytearray()
            self._release(conn)
            request = Request(conn.head, body, conn.peer, conn.received)
            try:
                parts = self.app.respond(request)
            except Exception:
                log.exception("%s: answering %s failed", self.name, conn.peer)
                parts = text(500, "internal error")
            self._done.put((conn, parts))
            self._wake()


def _show(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _refuse(sock: socket.socket) -> None:
    """A 503 without a thread: one non-blocking send of a small answer, then close."""
    with contextlib.suppress(OSError):
        sock.send(_REFUSED)
        sock.recv(65536)  # a request already here, read, lets the close be a FIN, not a reset
    log.debug("refused a connection: every slot is busy answering")
    sock.close()
