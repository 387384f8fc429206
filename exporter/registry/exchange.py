"""One HTTP exchange with a registry: concurrency cap, retries, metrics, capped bodies.

Every request, token requests included, goes through ``Exchanger.send`` so it is counted
by the observer, bounded by the per-registry semaphore and retried the same way: 5xx,
timeouts and connection errors with jittered backoff, 429 honouring ``Retry-After``
(capped). Bodies are streamed and refused beyond a size cap, and each attempt (connect,
headers and body) must end within a deadline, so a hostile or broken registry can neither
exhaust memory nor hold a worker. Every exception of the HTTP stack stops here, mapped to
the registry's own (a deadline, TLS or protocol failure is not retried: it would fail the
same way again).
"""

from __future__ import annotations

import logging
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import h11
import httpcore
import httpx

from exporter.model import TLSOptions
from exporter.registry.backoff import RetryPolicy, parse_retry_after
from exporter.registry.errors import (
    RegistryError,
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnavailable,
)
from exporter.registry.pools import Deadline, Pools

log = logging.getLogger(__name__)
DEADLINE = 30.0  # seconds per attempt: connect, request, headers and body

# Exceptions of the HTTP stack that are not ``httpx.HTTPError``: raised while forming a
# request (bad URL or header characters, IDNA) or, in principle, leaking from below httpx.
_STACK_ERRORS: tuple[type[Exception], ...] = (
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
    httpcore.ConnectionNotAvailable,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    h11.ProtocolError,
    UnicodeError,
    OSError,  # ssl.SSLError included
)
_FAILURES: tuple[type[Exception], ...] = (httpx.HTTPError, *_STACK_ERRORS)
# httpx errors that say the exchange itself is malformed: retrying cannot help
_MALFORMED: dict[type[httpx.HTTPError], str] = {
    httpx.UnsupportedProtocol: "redirected to a URL that is not http(s)",
    httpx.LocalProtocolError: "the request is not valid HTTP (a header with a control character?)",
    httpx.TooManyRedirects: "too many redirects",
    httpx.DecodingError: "the response body cannot be decoded",
}


class RegistryObserver(Protocol):
    """Metrics hook, called for every HTTP response (``code`` is the status, or ``"error"``)."""

    def request(self, registry: str, code: str, seconds: float) -> None: ...

    def rate_limited(self, registry: str) -> None: ...


@runtime_checkable
class ContactObserver(Protocol):
    """An observer that also hears of each registry once, before its first request (so
    its counters can start from 0 and their first increase is seen)."""

    def registry_contacted(self, registry: str) -> None: ...


class NullObserver:
    def request(self, registry: str, code: str, seconds: float) -> None:
        pass

    def rate_limited(self, registry: str) -> None:
        pass


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


class Exchanger:
    def __init__(
        self,
        *,
        pools: Pools,
        observer: RegistryObserver,
        policy: RetryPolicy,
        sleep: Callable[[float], None],
        wall_clock: Callable[[], float] = time.time,
        deadline: float = DEADLINE,
    ) -> None:
        self._pools = pools
        self._observer = observer
        self._contacted = (
            observer.registry_contacted if isinstance(observer, ContactObserver) else None
        )
        self._seen: set[str] = set()  # registries announced to the observer
        self._policy = policy
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._deadline = deadline

    def send(
        self,
        registry: str,
        tls: TLSOptions,
        method: str,
        url: str | httpx.URL,
        headers: Mapping[str, str],
        authorization: str | None,
        max_bytes: int,
        content: bytes | None = None,
        follow_redirects: bool = True,
    ) -> Reply:
        """One HTTP exchange with retries; the body is read (capped) before the slot is freed."""
        try:
            target = httpx.URL(url)
            client = self._pools.client(target.netloc.decode("ascii"), tls)
            all_headers = dict(headers)
            if authorization is not None:
                all_headers["Authorization"] = authorization
            request = client.build_request(method, target, headers=all_headers, content=content)
        except _STACK_ERRORS as exc:
            raise RegistryProtocolError(
                f"{registry}: the request cannot be formed ({type(exc).__name__})"
            ) from exc
        if registry not in self._seen:
            self._seen.add(registry)
            if self._contacted is not None:
                self._contacted(registry)
        semaphore = self._pools.semaphore(registry)
        attempt = 0
        while True:
            started = time.perf_counter()
            deadline = Deadline(self._deadline)
            status: int | None = None
            try:
                with semaphore, deadline:
                    response = client.send(request, stream=True, follow_redirects=follow_redirects)
                    status = response.status_code
                    try:
                        body = b"" if method == "HEAD" else _read(response, max_bytes, deadline)
                    finally:
                        response.close()
            except _FAILURES as exc:
                self._observer.request(registry, "error", time.perf_counter() - started)
                failure, retry = self._failure(registry, exc, deadline, attempt)
                if retry and attempt < self._policy.retries:
                    delay = self._policy.backoff(attempt)
                    log.debug("%s: %s, retrying in %.2fs", registry, type(exc).__name__, delay)
                    self._sleep(delay)
                    attempt += 1
                    continue
                raise failure from exc
            except RegistryError:  # the body broke the size cap
                self._observer.request(registry, str(status), time.perf_counter() - started)
                raise
            self._observer.request(registry, str(status), time.perf_counter() - started)
            if status == 429:
                self._observer.rate_limited(registry)
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self._wall_clock()
                )
                if self._policy.retry_rate_limited and attempt < self._policy.retries:
                    self._sleep(self._policy.after_429(retry_after, attempt))
                    attempt += 1
                    continue
                raise RegistryRateLimited(f"{registry}: rate limited (HTTP 429)", retry_after)
            if status >= 500 and status != 501:
                if attempt < self._policy.retries:
                    delay = self._policy.backoff(attempt)
                    log.debug("%s: HTTP %d, retrying in %.2fs", registry, status, delay)
                    self._sleep(delay)
                    attempt += 1
                    continue
                raise RegistryUnavailable(f"{registry}: HTTP {status} after {attempt + 1} attempts")
            return Reply(status, response.headers, body, response.url)

    def _failure(
        self, registry: str, exc: Exception, deadline: Deadline, attempt: int
    ) -> tuple[RegistryError, bool]:
        """The registry error for a failed attempt, and whether another attempt may help."""
        if deadline.expired:  # a registry this slow is as slow on the next attempt
            return RegistryUnavailable(
                f"{registry}: no complete answer within the {self._deadline:g}s deadline"
            ), False
        tls_problem = _tls_failure(exc)
        if tls_problem is not None:  # the same certificates fail the same way again
            return RegistryUnavailable(f"{registry}: {tls_problem}"), False
        for kind, reason in _MALFORMED.items():
            if isinstance(exc, kind):
                return RegistryProtocolError(f"{registry}: {reason}"), False
        if isinstance(exc, httpx.TransportError):
            return RegistryUnavailable(
                f"{registry}: {type(exc).__name__} after {attempt + 1} attempts"
            ), True
        if isinstance(exc, (httpcore.TimeoutException, httpcore.NetworkError, OSError)):
            return RegistryUnavailable(f"{registry}: {type(exc).__name__}"), False
        return RegistryProtocolError(
            f"{registry}: the HTTP exchange failed ({type(exc).__name__})"
        ), False


def _read(response: httpx.Response, max_bytes: int, deadline: Deadline) -> bytes:
    """The body, decoded and refused beyond ``max_bytes``. Decoded here, not by httpx: a
    gzip bomb would otherwise inflate each 64 KiB read to up to 64 MiB before the cap is
    checked. The sockets keep the deadline; checking it per chunk too covers transports
    that are not ours (tests, proxies)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"response of {declared} bytes exceeds the {max_bytes} byte cap")
    if response.is_stream_consumed:  # a transport that read and decoded it already
        if len(response.content) > max_bytes:
            raise BodyTooLarge(f"response exceeds the {max_bytes} byte cap")
        return response.content
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    chunks: list[bytes] = []
    size = 0
    compressed = False  # any bytes at all: an empty body (a proxy's 401) has no gzip trailer
    try:
        for raw in response.iter_raw():
            compressed = compressed or bool(raw)
            while raw:
                if decoder is None:
                    chunk, raw = raw, b""
                else:  # never more than one byte beyond what is left
                    chunk = decoder.decompress(raw, max_bytes - size + 1)
                    raw = decoder.unconsumed_tail
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"response exceeds the {max_bytes} byte cap")
                chunks.append(chunk)
            if deadline.left() <= 0:
                raise httpx.ReadTimeout(
                    "the exchange's deadline has passed", request=response.request
                )
        if decoder is not None and compressed:
            if not decoder.eof:
                raise zlib.error("truncated")
            chunks.append(decoder.flush())
    except zlib.error:
        chunks.clear()
        raise httpx.DecodingError(
            "the compressed body is corrupt", request=response.request
        ) from None
    except BaseException:
        chunks.clear()  # the traceback keeps this frame: not what it read
        raise
    return b"".join(chunks)


def _decoder(encoding: str) -> zlib._Decompress | None:
    """A decompressor for the ``Content-Encoding`` we offered; None for identity."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or a zlib header
    raise httpx.DecodingError(f"unsupported Content-Encoding {coding[:40]!a}")


class BodyTooLarge(RegistryProtocolError):
    """A response body beyond the cap the caller set (the client maps it per use)."""


def _tls_failure(exc: BaseException) -> str | None:
    """A short, secret-free reason when ``exc`` comes from certificate checks or the TLS
    handshake (an unknown CA, a client certificate the registry wants or refuses)."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> ssl; bounded in case of a cycle
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            reason = str(seen.reason or type(seen).__name__)
            hint = ""
            if "BAD_CERTIFICATE" in reason or "CERTIFICATE_REQUIRED" in reason:
                hint = " (the registry wants a client certificate, or refused ours)"
            return f"TLS handshake failed: {reason}{hint}"
        seen = seen.__cause__ or seen.__context__
    return None
