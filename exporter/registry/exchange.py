"""One HTTP exchange with a registry: concurrency cap, retries, metrics, capped bodies.

Every request, token requests included, goes through ``Exchanger.send`` so it is counted
by the observer, bounded by the per-registry semaphore and retried the same way: 5xx,
timeouts and connection errors with jittered backoff, 429 honouring ``Retry-After``
(capped). Bodies are streamed and refused beyond a size cap, so a hostile or broken
registry cannot exhaust memory. httpx exceptions stop here.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from exporter.model import TLSOptions
from exporter.registry.backoff import RetryPolicy, parse_retry_after
from exporter.registry.errors import (
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnavailable,
)
from exporter.registry.pools import Pools

log = logging.getLogger(__name__)


class RegistryObserver(Protocol):
    """Metrics hook, called for every HTTP response (``code`` is the status, or ``"error"``)."""

    def request(self, registry: str, code: str, seconds: float) -> None: ...

    def rate_limited(self, registry: str) -> None: ...


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
    ) -> None:
        self._pools = pools
        self._observer = observer
        self._policy = policy
        self._sleep = sleep
        self._wall_clock = wall_clock

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
    ) -> Reply:
        """One HTTP exchange with retries; the body is read (capped) before the slot is freed."""
        target = httpx.URL(url)
        client = self._pools.client(target.netloc.decode("ascii"), tls)
        all_headers = dict(headers)
        if authorization is not None:
            all_headers["Authorization"] = authorization
        request = client.build_request(method, target, headers=all_headers, content=content)
        semaphore = self._pools.semaphore(registry)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                with semaphore:
                    response = client.send(request, stream=True)
                    try:
                        body = b"" if method == "HEAD" else _read_capped(response, max_bytes)
                    finally:
                        response.close()
            except httpx.HTTPError as exc:
                self._observer.request(registry, "error", time.perf_counter() - started)
                tls_problem = _tls_failure(exc)
                if tls_problem is not None:  # the same certificates fail the same way again
                    raise RegistryUnavailable(f"{registry}: {tls_problem}") from exc
                if attempt < self._policy.retries:
                    delay = self._policy.backoff(attempt)
                    log.debug("%s: %s, retrying in %.2fs", registry, type(exc).__name__, delay)
                    self._sleep(delay)
                    attempt += 1
                    continue
                raise RegistryUnavailable(
                    f"{registry}: {type(exc).__name__} after {attempt + 1} attempts"
                ) from exc
            self._observer.request(
                registry, str(response.status_code), time.perf_counter() - started
            )
            status = response.status_code
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


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RegistryProtocolError(f"response of {declared} bytes exceeds the {max_bytes} cap")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise RegistryProtocolError(f"response exceeds the {max_bytes} byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


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
