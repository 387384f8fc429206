"""The front door's connection accounting when a connection is evicted in the same
batch of socket events in which it was readable: never counted twice, so the cap holds."""

from __future__ import annotations

import socket
import threading
import time

from exporter.web.door import Admission, FrontDoor, Limits
from exporter.web.wire import Head, Request, text


class Slow:
    """Admits slowly (so that several sockets become ready in one batch) and answers late."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def admit(self, head: Head, peer: str) -> Admission:
        if head.path == "/slow":
            time.sleep(0.5)
        return 0

    def respond(self, request: Request) -> list[bytes]:
        if request.head.path == "/slow":
            self.release.wait(5)
        return text(200, "ok")


def test_an_evicted_connection_that_was_readable_is_not_counted_twice() -> None:
    app = Slow()
    door = FrontDoor(("127.0.0.1", 0), app, Limits(max_connections=2, workers=2), name="test")
    door.start()
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection(door.server_address, timeout=5)
        opened.append(sock)
        return sock

    try:
        first = connect()
        first.sendall(b"GET / HTTP/1.1\r\n")  # an unfinished head
        time.sleep(0.1)
        connect().sendall(b"GET /slow HTTP/1.1\r\n\r\n")  # admitted in 0.5 s, answered late
        time.sleep(0.1)
        connect()  # while the loop sleeps in admit: the first makes room for it...
        first.sendall(b"X")  # ...and is readable in the same batch
        time.sleep(1.0)
        for _ in range(4):
            connect()
            time.sleep(0.05)
        time.sleep(0.3)
        assert door.open_connections <= 2
        alive = 0
        for sock in opened:
            sock.setblocking(False)
            try:
                alive += sock.recv(1) != b""
            except BlockingIOError:
                alive += 1  # open, nothing to read
            except OSError:
                pass
        assert alive <= 2
    finally:
        app.release.set()
        for sock in opened:
            sock.close()
        door.stop()
