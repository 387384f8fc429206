"""HTTP endpoints: /metrics (Prometheus), /healthz (checks make progress), /readyz (lists
done, first full check done).

A scrape serves the per-target families as already-rendered bytes (``targets``, gzip
when the scraper accepts it) followed by the small self-instrumentation registry,
rendered at most once per ``LIVE_TTL`` and shared by concurrent scrapes: no I/O, no
registry or API call, nothing proportional to the number of targets computed. The format
is negotiated (``Accept``): OpenMetrics 1.0.0 when the scraper prefers it, as Prometheus
does, else the text format 0.0.4; both are written by prometheus_client's own functions,
and neither carries ``_created`` series.

The port is served by ``exporter.web.door``: one socket loop, a few workers, per-port
limits (connections, head and request deadlines, no request body at all).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from enum import Enum

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from exporter.web.door import Admission, FrontDoor, Limits
from exporter.web.wire import Head, Request, response, text

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # seconds from connect to a complete request head
MAX_CONNECTIONS = 512
WORKERS = 4
LIVE_TTL = 1.0  # seconds a rendering of the live registry is reused


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
    """/metrics, /healthz and /readyz; ``start`` serves on threads of their own, ``stop``
    closes everything."""

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
        limits = Limits(
            max_connections=max_connections,
            head_timeout=head_timeout,
            request_timeout=head_timeout,  # no body
            workers=WORKERS,
        )
        self._door = FrontDoor(address, self, limits, name="http")
        self.server_address = self._door.server_address

    def start(self) -> None:
        self._door.start()

    def stop(self) -> None:
        self._door.stop()

    def admit(self, head: Head, peer: str) -> Admission:
        return 0  # nothing here reads a body: any is left unread

    def respond(self, request: Request) -> list[bytes]:
        return self._respond(request.head)

    def metrics_body(self, fmt: Format, gzipped: bool) -> list[bytes]:
        """The parts of a /metrics answer. The targets' are sent as rendered, never copied;
        two gzip members one after the other make one valid gzip stream. The live part
        comes last: it carries OpenMetrics' closing ``# EOF``."""
        return [*self.targets(fmt, gzipped), self.live.get(fmt, gzipped)]

    def _respond(self, head: Head) -> list[bytes]:
        method, headers = head.method, head.headers
        if method not in ("GET", "HEAD"):
            return text(405, "only GET", {"Allow": "GET, HEAD"})
        path = head.path
        if path == "/metrics":
            fmt = negotiate(headers.get("accept", ""))
            zipped = _accepts_gzip(headers.get("accept-encoding", ""))
            parts = self.metrics_body(fmt, zipped)
            extra = {"Vary": "Accept, Accept-Encoding"}
            if zipped:
                extra["Content-Encoding"] = "gzip"
            answer = response(200, parts, fmt.content_type, extra)
        elif path in ("/healthz", "/readyz"):
            ok, why = (self.healthy if path == "/healthz" else self.ready)()
            answer = text(200 if ok else 503, why)
        else:
            answer = text(404, "not found: try /metrics, /healthz or /readyz")
        return answer[:1] if method == "HEAD" else answer


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            q = params.strip().lower().removeprefix("q=").strip()
            return not q or q.strip("0.") != ""
    return False
