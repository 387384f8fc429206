"""HTTP endpoints: /metrics (Prometheus), /healthz (checks make progress), /readyz (lists
done, first full check done).

A scrape serves the per-target families as already-rendered bytes (``targets``, gzip
when the scraper accepts it) followed by the small self-instrumentation registry: no
I/O, no registry or API call, nothing proportional to the number of targets computed.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Endpoints(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        targets: Callable[[bool], bytes],
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        self.metrics_registry = registry
        self.targets = targets
        self.healthy = healthy
        self.ready = ready
        super().__init__(address, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Endpoints

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            zipped = "gzip" in self.headers.get("Accept-Encoding", "")
            live = generate_latest(self.server.metrics_registry)
            # two parts, written one after the other: the large one is served as rendered,
            # never copied (two gzip members make one valid gzip stream)
            parts = (self.server.targets(zipped), gzip.compress(live, 1) if zipped else live)
            self._send(200, parts, CONTENT_TYPE_LATEST, "gzip" if zipped else None)
        elif path in ("/healthz", "/readyz"):
            ok, why = (self.server.healthy if path == "/healthz" else self.server.ready)()
            self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

    def _send(
        self,
        code: int,
        body: bytes | tuple[bytes, ...],
        content_type: str,
        encoding: str | None = None,
    ) -> None:
        parts = body if isinstance(body, tuple) else (body,)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if encoding is not None:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(sum(len(p) for p in parts)))
        self.end_headers()
        for part in parts:
            self.wfile.write(part)

    def log_message(self, format: str, *args: object) -> None:
        return  # scrapes every few seconds would drown the useful lines
