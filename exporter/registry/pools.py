"""One HTTP connection pool per (registry, TLS options), a per-registry concurrency cap, and
the deadline every socket of those pools obeys.

Per-request connection set-up dominates paginated listings (TLS handshakes cost more
than a page of tags), so every request to a registry with the same TLS settings reuses
one ``httpx.Client``. The semaphore bounds how many requests one exporter has in flight
against one registry, whatever the number of worker threads.

httpx's timeouts bound each socket operation, not an exchange: a registry dripping a byte
every few seconds holds a worker for ever, in the headers as in the body. So the pools'
sockets shorten every connect, read and write to what is left of the calling thread's
``Deadline`` (sync httpx does its I/O on the calling thread).

Credentials may only travel to the registry's own origin; ``origin`` and
``registry_origin`` are what the client and the session compare.
"""

from __future__ import annotations

import functools
import math
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpcore
import httpx

from exporter.model import TLSOptions
from exporter.registry.errors import RegistryConfigError

ACCEPT_ENCODING = "gzip"  # what ``exchange`` decodes itself, within the body cap
Origin = tuple[str, str, int]  # scheme, host (IDNA, lower case), port
_DEFAULT_PORTS = {"http": 80, "https": 443}


def base_url(registry: str, tls: TLSOptions) -> str:
    """``https://host[:port]``; plain HTTP when the source allows it (Flux's ``insecure``)."""
    return f"{'http' if tls.insecure else 'https'}://{registry}"


def origin(url: httpx.URL) -> Origin:
    """(scheme, host, port) with the default port filled in: what "same origin" compares."""
    scheme = url.scheme
    return scheme, url.raw_host.decode("ascii").lower(), url.port or _DEFAULT_PORTS.get(scheme, 0)


def show_origin(where: Origin) -> str:
    """``scheme://host:port``: never a path, query or user information (they may hold secrets)."""
    scheme, host, port = where
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@functools.lru_cache(maxsize=4096)
def registry_origin(registry: str, insecure: bool) -> Origin:
    try:
        return origin(httpx.URL(base_url(registry, TLSOptions(insecure=insecure))))
    except (httpx.InvalidURL, UnicodeError) as exc:
        shown = ascii(registry)[1:-1]
        raise RegistryConfigError(f"{shown}: not a usable registry address") from exc


class Deadline:
    """The latest moment one exchange may still wait on the network (monotonic seconds).

    ``with deadline:`` starts it and makes it the calling thread's: sockets of ``Pools``
    then never wait past it, and ``expired`` tells whether it is what ended the exchange.
    """

    __slots__ = ("at", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = math.inf
        self.expired = False

    def __enter__(self) -> Deadline:
        self.at = time.monotonic() + self.seconds
        _local.deadline = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.deadline = None

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            self.expired = True
        return left


_local = threading.local()


def _bounded(timeout: float | None, error: type[Exception]) -> tuple[Deadline | None, float | None]:
    """The timeout for one socket operation, and the deadline when it is what shortened it."""
    deadline: Deadline | None = getattr(_local, "deadline", None)
    if deadline is None:
        return None, timeout
    left = deadline.left()
    if left <= 0:
        raise error("the exchange's deadline has passed")
    if timeout is not None and timeout <= left:
        return None, timeout
    return deadline, left


def _expire(deadline: Deadline | None) -> None:
    if deadline is not None:
        deadline.expired = True


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline, timeout = _bounded(timeout, httpcore.ReadTimeout)
        try:
            return self._inner.read(max_bytes, timeout)
        except httpcore.ReadTimeout:
            _expire(deadline)
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadline, timeout = _bounded(timeout, httpcore.WriteTimeout)
        try:
            self._inner.write(buffer, timeout)
        except httpcore.WriteTimeout:
            _expire(deadline)
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        deadline, timeout = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))
        except httpcore.ConnectTimeout:
            _expire(deadline)
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


ConnectTo = Mapping[tuple[str, int], tuple[str, int]]
"""(host, port) as a URL names it -> (host, port) to connect to, like curl's ``--connect-to``:
TLS still checks the certificate against the URL's host. Tests point the clouds' real
host names at loopback stand-ins with it; nothing else sets it."""


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, connect_to: ConnectTo | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self._connect_to = connect_to or {}

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline, timeout = _bounded(timeout, httpcore.ConnectTimeout)
        host, port = self._connect_to.get((host, port), (host, port))
        try:
            stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        except httpcore.ConnectTimeout:
            _expire(deadline)
            raise
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_transport(
    verify: ssl.SSLContext, limits: httpx.Limits, connect_to: ConnectTo | None = None
) -> httpx.HTTPTransport:
    """httpx's transport on deadline-bound sockets.

    httpx takes no network backend, so the (still empty) pool it built is swapped for the
    same pool on ``_DeadlineBackend``; httpx is pinned below 0.29 and the hardening tests
    prove the deadline holds in the headers and the body.
    """
    transport = httpx.HTTPTransport(verify=verify, limits=limits)
    transport._pool.close()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=verify,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_DeadlineBackend(connect_to),
    )
    return transport


def ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    """System trust store, extended with the source's CA bundle; optional client certificate."""
    context = ssl.create_default_context()
    if tls.ca_pem:
        context.load_verify_locations(cadata=tls.ca_pem.decode("ascii", errors="replace"))
    if tls.client_cert_pem and tls.client_key_pem:
        # The ssl module loads key pairs only from files: write them to a private temp dir.
        with tempfile.TemporaryDirectory(prefix="fot-tls-") as tmp:
            cert_path = os.path.join(tmp, "tls.crt")
            key_path = os.path.join(tmp, "tls.key")
            for path, data in ((cert_path, tls.client_cert_pem), (key_path, tls.client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            context.load_cert_chain(cert_path, key_path)
    return context


def _verify(registry: str, tls: TLSOptions) -> ssl.SSLContext:
    if tls.insecure:
        return httpx.create_ssl_context(verify=False)
    try:
        return ssl_context(tls)
    except (ssl.SSLError, ValueError, OSError) as exc:
        # the ssl module's messages name the problem, never the key material
        detail = str(exc)[:120] if isinstance(exc, ssl.SSLError) else type(exc).__name__
        raise RegistryConfigError(f"{registry}: the TLS settings cannot be used: {detail}") from exc


class Pools:
    """Lazily created clients keyed by (registry, TLS fingerprint); thread-safe."""

    def __init__(
        self,
        *,
        timeout: float,
        max_concurrency: int,
        user_agent: str,
        transport: httpx.BaseTransport | None = None,
        connect_to: ConnectTo | None = None,
    ) -> None:
        self._transport = transport  # tests only: httpx.MockTransport for unreproducible answers
        self._connect_to = connect_to  # tests only: see ConnectTo
        self._timeout = timeout
        self._max_concurrency = max_concurrency
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], httpx.Client] = {}
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._closed = False

    def client(self, registry: str, tls: TLSOptions) -> httpx.Client:
        key = (registry, tls.fingerprint())
        with self._lock:
            if self._closed:
                raise RuntimeError("registry client is closed")
            existing = self._clients.get(key)
            if existing is not None:
                return existing
        # Build outside the lock: loading a CA bundle is slow and must not block other registries.
        verify = _verify(registry, tls)
        limits = httpx.Limits(
            max_connections=self._max_concurrency + 2,
            max_keepalive_connections=self._max_concurrency,
        )
        created = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(self._timeout),
            limits=limits,
            headers={"User-Agent": self._user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            follow_redirects=True,  # blob/manifest redirects to storage; tags never redirect
            transport=self._transport or deadline_transport(verify, limits, self._connect_to),
            trust_env=True,  # honour HTTPS_PROXY / NO_PROXY like Flux does
        )
        with self._lock:
            existing = self._clients.get(key)
            if existing is None and not self._closed:
                self._clients[key] = created
                return created
        created.close()
        if existing is None:
            raise RuntimeError("registry client is closed")
        return existing

    def semaphore(self, registry: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._semaphores.get(registry)
            if sem is None:
                sem = self._semaphores[registry] = threading.BoundedSemaphore(self._max_concurrency)
            return sem

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._closed = True
        for client in clients:
            client.close()
