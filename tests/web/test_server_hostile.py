"""The metrics server under clients that are many, idle, slow or gone.

A real ``Endpoints`` on loopback serves a large synthetic page (about 6 MB, the order of
the exposition at ten thousand targets); clients are plain sockets, so each test controls
exactly what is sent, read and when.
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter.web.endpoints import Endpoints, Format

LINE = b'flux_oci_target_lag_seconds{kind="OCIRepository",namespace="team",name="app-%07d"} 0\n'
LINES = 6_000_000 // len(LINE % 0)
BODY = b"".join(LINE % i for i in range(LINES))
BODY_GZ = gzip.compress(BODY, compresslevel=1)


def page(fmt: Format, gzipped: bool) -> tuple[bytes, ...]:
    """The ``targets`` callable: pre-rendered bytes, as the exposition renderer keeps them."""
    return (BODY_GZ,) if gzipped else (BODY,)


class Live(Collector):
    """A live family after the targets, counting how often the registry is rendered."""

    def __init__(self) -> None:
        self.collects = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.collects += 1
        yield GaugeMetricFamily("flux_oci_scrape_probe", "Rendered at scrape time.", value=1)


@pytest.fixture
def live() -> Live:
    return Live()


@pytest.fixture
def server(live: Live) -> Iterator[Endpoints]:
    registry = CollectorRegistry()
    registry.register(live)
    # a live registry that costs about as much to render as the exporter's own
    seconds = Histogram("flux_oci_probe_seconds", "Requests.", ["registry"], registry=registry)
    for i in range(300):
        seconds.labels(f"registry-{i}.example").observe(0.1)
    endpoints = Endpoints(
        ("127.0.0.1", 0),
        registry,
        page,
        lambda: (True, "checks progress"),
        lambda: (False, "lists synced: False"),
    )
    endpoints.start()
    try:
        yield endpoints
    finally:
        endpoints.stop()


def address(server: Endpoints) -> tuple[str, int]:
    host, port = server.server_address[:2]
    return str(host), int(port)


def get(
    server: Endpoints, path: str = "/metrics", *, gzipped: bool = False, timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; status, headers (lower-case names), body."""
    with socket.create_connection(address(server), timeout=timeout) as sock:
        extra = "Accept-Encoding: gzip\r\n" if gzipped else ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return int(status.split()[1]), headers, body


def test_a_scrape_is_the_targets_then_the_live_registry(server: Endpoints) -> None:
    code, headers, body = get(server)
    assert code == 200 and int(headers["content-length"]) == len(body)
    assert body.startswith(BODY) and b"flux_oci_scrape_probe 1.0" in body[len(BODY) :]
    assert headers["content-type"].startswith("text/plain; version=")

    code, headers, zipped = get(server, gzipped=True)
    assert code == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped) == body  # two gzip members make one valid stream


def test_health_readiness_and_unknown_paths(server: Endpoints) -> None:
    assert get(server, "/healthz")[::2] == (200, b"checks progress\n")
    assert get(server, "/readyz?verbose")[::2] == (503, b"lists synced: False\n")
    assert get(server, "/nope")[0] == 404


def test_concurrent_scrapes_share_one_rendering_of_the_live_registry(
    server: Endpoints, live: Live
) -> None:
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: get(server, gzipped=True)[2], range(8)))
    assert len(set(bodies)) == 1
    assert live.collects == 1


def test_200_concurrent_scrapes_are_all_answered(server: Endpoints) -> None:
    def timed(_: int) -> tuple[float, int, int]:
        start = time.monotonic()
        code, _headers, body = get(server)
        return time.monotonic() - start, code, len(body)

    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(timed, range(200)))
    assert {(code, size > len(BODY)) for _, code, size in results} == {(200, True)}
    seconds = sorted(s for s, _, _ in results)
    assert seconds[int(len(seconds) * 0.99) - 1] < 5, seconds[-5:]


def test_idle_connections_cost_no_thread_and_do_not_delay_a_scrape(server: Endpoints) -> None:
    before = threading.active_count()
    idle = [socket.create_connection(address(server), timeout=5) for _ in range(300)]
    try:
        for sock in idle[::2]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        time.sleep(0.5)
        assert threading.active_count() <= before + 10
        start = time.monotonic()
        code, _, body = get(server, timeout=5)
        assert code == 200 and body.startswith(BODY)
        assert time.monotonic() - start < 1
        assert threading.active_count() <= before + 10
    finally:
        for sock in idle:
            sock.close()


def test_a_client_that_sends_nothing_is_closed() -> None:
    server = small_server(16, head_timeout=0.5)
    try:
        with socket.create_connection(address(server), timeout=5) as sock:
            start = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server, not by this timeout
            assert time.monotonic() - start < 3
    finally:
        server.stop()


def test_an_oversized_head_is_refused(server: Endpoints) -> None:
    code, _, _ = get(server, "/" + "x" * 20_000)
    assert code == 431


def test_an_aborted_scrape_is_only_a_debug_line(
    server: Endpoints, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.web.door")
    for _ in range(5):
        sock = socket.create_connection(address(server), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1000)
        # abort: RST instead of FIN, with most of the page unread
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert get(server, "/healthz")[0] == 200  # still serving
    time.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def small_server(max_connections: int, head_timeout: float = 10.0) -> Endpoints:
    endpoints = Endpoints(
        ("127.0.0.1", 0),
        CollectorRegistry(),
        page,
        lambda: (True, "ok"),
        lambda: (True, "ok"),
        max_connections=max_connections,
        head_timeout=head_timeout,
    )
    endpoints.start()
    return endpoints


def test_when_full_the_longest_idle_connection_makes_room() -> None:
    server = small_server(16)
    idle = [socket.create_connection(address(server), timeout=5) for _ in range(40)]
    try:
        time.sleep(0.2)
        assert get(server, "/healthz", timeout=5)[0] == 200
        assert idle[0].recv(1) == b""  # the oldest were closed for the newcomers
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_when_every_slot_is_answering_a_newcomer_gets_503_at_once() -> None:
    server = small_server(4)
    stalled = []
    try:
        for _ in range(4):  # ask for the large page and never read it
            sock = socket.create_connection(address(server), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(sock)
        time.sleep(0.5)
        start = time.monotonic()
        assert get(server, "/healthz", timeout=5)[0] == 503
        assert time.monotonic() - start < 1
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
    assert threading.active_count() < 20


SERVER_WITH_FEW_FILES = """
import resource, sys, time
from prometheus_client import CollectorRegistry
from exporter.web.endpoints import Endpoints
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
server = Endpoints(("127.0.0.1", 0), CollectorRegistry(), lambda f, z: (),
                   lambda: (True, "ok"), lambda: (True, "ok"))
server.start()
print(server.server_address[1], flush=True)
sys.stdin.read()
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_idle_connections_make_room() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_WITH_FEW_FILES],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    idle: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline())
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
        time.sleep(0.5)
        before = cpu_seconds(proc.pid)
        time.sleep(1)
        assert cpu_seconds(proc.pid) - before < 0.5  # no busy loop on EMFILE
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in idle:
            sock.close()
        proc.stdin.close()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "Traceback" not in stderr
