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

The port faces the internet, so it is served by ``exporter.web.door`` with tight limits
(``LIMITS``), and everything that can be decided from the head is decided before a byte
of the body is read: the path, the source being on, the length, the content type and,
but for GitHub (whose signature covers the body), the secret. A GitHub delivery needs a
well-formed signature header to have its body read at all.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence

from exporter.core.hooks import HTTP_SOURCES, HookSource, InvalidEvent, Nudge, parse
from exporter.model import EventResult
from exporter.web.door import Admission, FrontDoor, Limits
from exporter.web.wire import Head, Request, text

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
LIMITS = Limits(
    max_connections=1024,
    head_timeout=5.0,
    request_timeout=15.0,  # a 1 MiB event, from connect to its last byte
    send_timeout=10.0,
    max_head=16 * 1024,
    max_body=MAX_BODY,
    workers=2,
    backlog=4096,
    max_buffered=16 << 20,  # sixteen 1 MiB bodies at once; events are a few KB
)
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
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
Count = Callable[[str, EventResult], None]


def authorized(source: HookSource, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the delivery carries the source's secret (header names in lower case)."""
    if source is HookSource.GITHUB:
        signature = headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature.encode(), expected.encode())
    return _header_secret(source, secret, headers)


def _header_secret(source: HookSource, secret: str, headers: Mapping[str, str]) -> bool:
    name = "x-gitlab-token" if source is HookSource.GITLAB else "authorization"
    given = headers.get(name, "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, secret.encode())


class Listener:
    """``start`` serves on threads of its own; ``stop`` closes the port."""

    def __init__(
        self,
        address: tuple[str, int],
        secrets: Mapping[HookSource, str],
        deliver: Deliver,
        count: Count,
        *,
        gitlab_host: str,
        limits: Limits = LIMITS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = dict(secrets)
        self.deliver = deliver
        self.count = count
        self.gitlab_host = gitlab_host
        self._door = FrontDoor(address, self, limits, name="events", wall_clock=wall_clock)
        self.server_address = self._door.server_address

    @property
    def open_connections(self) -> int:
        return self._door.open_connections

    def start(self) -> None:
        self._door.start()

    def stop(self) -> None:
        self._door.stop()

    def admit(self, head: Head, peer: str) -> Admission:
        """Everything the head can decide, before the body is read."""
        if head.method != "POST":
            return text(405, "POST events to /hooks/<source>", {"Allow": "POST"})
        path = head.path.rstrip("/")
        name = path.removeprefix("/hooks/") if path.startswith("/hooks/") else ""
        try:
            source = HookSource(name)
        except ValueError:
            return text(404, "not found")
        if source not in HTTP_SOURCES:
            return text(404, "not found")
        secret = self.secrets.get(source)
        if not secret:
            return text(404, f"{source} events are not enabled")
        length = head.content_length()
        if length is None:
            return text(411, "Content-Length required")
        if length > MAX_BODY:
            return text(413, "body too large")
        if source is HookSource.GITHUB:
            signed = _SIGNATURE.fullmatch(head.headers.get("x-hub-signature-256", "")) is not None
        else:
            signed = _header_secret(source, secret, head.headers)
        if not signed:
            return self._refused(source, peer)
        media = head.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in JSON_TYPES[source]:
            self.count(source.value, EventResult.INVALID)
            return text(415, "unsupported content type")
        return length

    def respond(self, request: Request) -> list[bytes]:
        """With the body: GitHub's signature, then the payload; 202 for anything it names."""
        head = request.head
        source = HookSource(head.path.rstrip("/").removeprefix("/hooks/"))
        secret = self.secrets[source]
        if source is HookSource.GITHUB and not authorized(source, secret, head.headers,
                                                            request.body):  # fmt: skip
            return self._refused(source, request.peer)
        try:
            nudges = parse(source, request.body, head.headers.get(_EVENT_HEADER[source], ""),
                           self.gitlab_host)  # fmt: skip
        except InvalidEvent as exc:
            self.count(source.value, EventResult.INVALID)
            log.info("%s event refused: %s", source, exc)
            return text(400, "invalid event")
        self.deliver(source, nudges, request.received)
        return text(202, "accepted")

    def _refused(self, source: HookSource, peer: str) -> list[bytes]:
        self.count(source.value, EventResult.UNAUTHORIZED)
        log.info("%s event refused: not authorized (from %s)", source, peer.rsplit(":", 1)[0])
        return text(401, "unauthorized")


_EVENT_HEADER = {
    HookSource.DISTRIBUTION: "x-event",  # not sent: distribution has one kind of envelope
    HookSource.GITLAB: "x-gitlab-event",
    HookSource.GITHUB: "x-github-event",
    HookSource.HARBOR: "x-event",
}
