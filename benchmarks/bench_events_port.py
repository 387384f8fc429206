"""The events port under attack: threads, RSS and a valid event's answer time.

The listener runs in a child process of its own (as in the exporter: the real
``Listener`` with its production limits), so its threads and RSS are read from
``/proc/<pid>/status`` alone. Phases, each followed by 20 valid deliveries timed from
connect to the 202:

- ``idle``: nothing else;
- ``slowloris``: 300 sockets holding unfinished heads, a byte every second;
- ``storm``: 2,000 connections opened at once and held (beyond the 1,024 cap);
- ``trickle``: 50 authorized deliveries declaring 1 MiB and sending a byte a second;
- ``strangers``: 200 unauthorized deliveries declaring 1 MiB (refused on the head).

    .venv/bin/python benchmarks/bench_events_port.py
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SECRET = "Bearer bench-SECRET"
DIST_TYPE = "application/vnd.docker.distribution.events.v1+json"
BODY = json.dumps(
    {
        "events": [
            {
                "action": "push",
                "target": {"repository": "team/app", "tag": "1.0.0"},
                "request": {"host": "registry.example"},
            }
        ]
    }
).encode()
CHILD = """
import sys, threading
from exporter.web.listener import Listener
from exporter.core.hooks import HookSource
count = [0]
def deliver(source, nudges, at):
    count[0] += 1
listener = Listener(("127.0.0.1", 0), {HookSource.DISTRIBUTION: %r}, deliver,
                    lambda s, r: None, gitlab_host="registry.gitlab.com")
listener.start()
print(listener.server_address[1], flush=True)
sys.stdin.read()
listener.stop()
"""


def status(pid: int) -> tuple[int, float]:
    """(threads, RSS in MB) of the process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


def head(length: int, secret: str = SECRET) -> bytes:
    return (
        "POST /hooks/distribution HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {secret}\r\nContent-Type: {DIST_TYPE}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def deliver(port: int) -> float:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head(len(BODY)) + BODY)
        answer = sock.recv(100)
    if not answer.startswith(b"HTTP/1.1 202"):
        raise RuntimeError(f"unexpected answer {answer[:40]!r}")
    return time.perf_counter() - start


def timed(port: int, n: int = 20) -> str:
    took = sorted(deliver(port) for _ in range(n))
    return (f"202 in p50 {statistics.median(took) * 1000:6.1f} ms, "
            f"max {took[-1] * 1000:6.1f} ms")  # fmt: skip


def drip(socks: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(b"x")


def main() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD % SECRET], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    held: list[socket.socket] = []
    stop = threading.Event()
    rows = []

    def row(phase: str) -> None:
        time.sleep(0.5)
        threads, rss = status(child.pid)
        rows.append(f"{phase:10s} threads {threads:3d}  RSS {rss:6.1f} MB  {timed(port)}")

    try:
        row("idle")
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        for sock in slow:
            sock.send(b"POST /hooks/distribution HTTP/1.1\r\n")
        held += slow
        threading.Thread(target=drip, args=(slow, stop), daemon=True).start()
        row("slowloris")
        start = time.monotonic()
        storm = [socket.create_connection(("127.0.0.1", port)) for _ in range(2000)]
        opened = time.monotonic() - start
        held += storm
        row("storm")
        rows.append(f"{'':10s} 2,000 connections opened in {opened:.2f} s")
        trickle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        for sock in trickle:
            sock.send(head(1 << 20))
        held += trickle
        threading.Thread(target=drip, args=(trickle, stop), daemon=True).start()
        row("trickle")
        refused = 0
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(head(1 << 20, "Bearer guess"))
                refused += sock.recv(100).startswith(b"HTTP/1.1 401")
        row("strangers")
        rows.append(f"{'':10s} {refused}/200 strangers refused on their head")
    finally:
        stop.set()
        for sock in held:
            sock.close()
        child.stdin.close()
        child.wait(timeout=10)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
