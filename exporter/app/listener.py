"""The events listener: one endpoint and one secret per source, whatever the number of
Flux objects, on a port of its own (exposed through an Ingress while /metrics is not).

``POST /hooks/distribution`` (registry notifications: the ``Authorization`` header
value configured on the registry's endpoint), ``/hooks/gitlab`` (``X-Gitlab-Token``),
``/hooks/github`` (``X-Hub-Signature-256``, HMAC-SHA256 of the body) and
``/hooks/harbor`` (the configured ``Authorization`` value). A source without a secret
is off (404). Secrets are compared in constant time; a refusal is a bare 401. Bodies
over 1 MiB get 413, unknown content types 415, malformed bodies 400; everything else is
answered 202 at once, relevant or not (a non-2xx makes a registry retry and back off its
whole endpoint, and the answer must not reveal which repositories are tracked). What an
event leads to is the engine's business: it is only a nudge.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter.core.hooks import HookSource, InvalidEvent, Nudge, parse

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
JSON_TYPES = {
    HookSource.DISTRIBUTION: (
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    ),
    HookSource.GITLAB: ("application/json",),
    HookSource.GITHUB: ("application/json",),
    HookSource.HARBOR: ("application/json",),
}
Deliver = Callable[[HookSource, Sequence[Nudge], float], None]
Count = Callable[[str, str], None]


def authorized(source: HookSource, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    if source is HookSource.GITHUB:
        signature = headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature.encode(), expected.encode())
    name = "X-Gitlab-Token" if source is HookSource.GITLAB else "Authorization"
    return hmac.compare_digest(headers.get(name, "").encode(), secret.encode())


class Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        secrets: Mapping[HookSource, str],
        deliver: Deliver,
        count: Count,
        *,
        gitlab_host: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = dict(secrets)
        self.deliver = deliver
        self.count = count
        self.gitlab_host = gitlab_host
        self.wall_clock = wall_clock
        super().__init__(address, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Listener
    timeout = 10  # seconds per socket operation: a client that stalls is dropped

    def do_GET(self) -> None:
        self._send(405, "POST events to /hooks/<source>\n")

    def do_POST(self) -> None:
        received = self.server.wall_clock()
        path = self.path.split("?", 1)[0].rstrip("/")
        name = path.removeprefix("/hooks/") if path.startswith("/hooks/") else ""
        try:
            source = HookSource(name)
        except ValueError:
            self._send(404, "not found\n")
            return
        secret = self.server.secrets.get(source)
        if not secret:
            self._send(404, f"{source} events are not enabled\n")
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._send(411, "Content-Length required\n")
            return
        if int(length) > MAX_BODY:
            self._send(413, "body too large\n")
            return
        body = self.rfile.read(int(length))
        headers = {k: v for k, v in self.headers.items()}
        if not authorized(source, secret, headers, body):
            self.server.count(source.value, "unauthorized")
            log.info("%s event refused: not authorized (from %s)", source, self.client_address[0])
            self._send(401, "unauthorized\n")
            return
        media = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media not in JSON_TYPES[source]:
            self.server.count(source.value, "invalid")
            self._send(415, "unsupported content type\n")
            return
        try:
            nudges = parse(source, body, self.headers.get(_EVENT_HEADER[source], ""),
                           self.server.gitlab_host)  # fmt: skip
        except InvalidEvent as exc:
            self.server.count(source.value, "invalid")
            log.info("%s event refused: %s", source, exc)
            self._send(400, "invalid event\n")
            return
        self.server.deliver(source, nudges, received)
        self._send(202, "accepted\n")

    def _send(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


_EVENT_HEADER = {
    HookSource.DISTRIBUTION: "X-Event",  # not sent: distribution has one kind of envelope
    HookSource.GITLAB: "X-Gitlab-Event",
    HookSource.GITHUB: "X-GitHub-Event",
    HookSource.HARBOR: "X-Event",
}
