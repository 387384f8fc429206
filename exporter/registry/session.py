"""One logical registry request with auth: challenge, token, retry with a fresh token.

``Session.request`` remembers which challenge each registry answered with, so after the
first contact requests carry a cached token and cost no extra 401 round trip. A cached
token that is refused gets one refresh; a fresh one that is refused, or
``insufficient_scope``, is final. Every auth failure feeds the breaker, and an open
breaker short-circuits before anything is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import httpx

from exporter.model import Credentials, RepositoryRef, TLSOptions
from exporter.registry import auth
from exporter.registry.backoff import AuthBreaker
from exporter.registry.challenge import Challenge, parse_challenges
from exporter.registry.errors import RegistryAuthBackoff, RegistryAuthError
from exporter.registry.exchange import Exchanger, Reply

log = logging.getLogger(__name__)
TOKEN_BODY_LIMIT = 1 << 20


class Session:
    def __init__(
        self,
        *,
        exchanger: Exchanger,
        breaker: AuthBreaker,
        tokens: auth.TokenCache,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exchanger = exchanger
        self._breaker = breaker
        self._tokens = tokens
        self._clock = clock
        self._lock = threading.Lock()
        self._challenges: dict[tuple[str, str], Challenge] = {}  # (registry, tls) -> last seen

    def request(
        self,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str],
        max_bytes: int,
    ) -> Reply:
        """Send with auth; returns any non-auth answer (the caller maps 404 and the rest)."""
        breaker_key = (repo.registry, credentials.fingerprint())
        wait = self._breaker.retry_in(breaker_key)
        if wait > 0:
            # the message stays the same while the condition does (one Event, not one per
            # check); the countdown is for the debug log
            log.debug("%s: auth cool-down, %.0fs left", repo.registry, wait)
            raise RegistryAuthBackoff(
                f"{repo.registry}: not contacted for a while after repeated auth failures"
            )
        site = (repo.registry, tls.fingerprint())
        with self._lock:
            known = self._challenges.get(site)
        authorization, token_key, fresh = self._authorization(known, repo, credentials, tls)
        retried = False
        while True:
            reply = self._exchanger.send(
                repo.registry, tls, method, url, headers, authorization, max_bytes
            )
            if reply.status not in (401, 403):
                if authorization is not None:
                    self._breaker.success(breaker_key)
                return reply
            where = f"{repo.registry}/{repo.path}"
            if reply.status == 403:
                self._breaker.failure(breaker_key)
                raise RegistryAuthError(f"{where}: access denied (HTTP 403)")
            challenge = _pick(parse_challenges(reply.headers.get("WWW-Authenticate", "")))
            if challenge is None:
                self._breaker.failure(breaker_key)
                raise RegistryAuthError(f"{where}: HTTP 401 without a usable challenge")
            with self._lock:
                self._challenges[site] = challenge
            error = challenge.get("error")
            if error == "insufficient_scope":
                self._breaker.failure(breaker_key)
                raise RegistryAuthError(f"{where}: no pull access (insufficient_scope)")
            if retried or (authorization is not None and fresh):
                self._breaker.failure(breaker_key)
                raise RegistryAuthError(f"{where}: registry rejected the credentials (HTTP 401)")
            if token_key is not None and authorization is not None:
                self._tokens.drop(token_key, authorization.removeprefix("Bearer "))
            retried = True
            authorization, token_key, fresh = self._authorization(challenge, repo, credentials, tls)
            if authorization is None:
                self._breaker.failure(breaker_key)
                raise RegistryAuthError(f"{where}: authentication required, no credentials")

    def _authorization(
        self,
        challenge: Challenge | None,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
    ) -> tuple[str | None, auth.TokenKey | None, bool]:
        """(Authorization value, token cache key, whether a 401 to it is final).

        Only a cached token deserves a second chance: it may have expired or been revoked.
        """
        if credentials.registry_token:
            return f"Bearer {credentials.registry_token}", None, True
        if challenge is None:
            return None, None, False
        if challenge.scheme == "basic":
            if credentials.kind != "basic":
                return None, None, False
            value = auth.basic_header(credentials.username or "", credentials.password or "")
            return value, None, True  # resending the same password cannot help
        # Our own scope, not the challenge's: the cache key must not depend on which path
        # (pre-authorised or challenged) fetched the token.
        scope = auth.pull_scope(repo.path)
        key = auth.TokenKey(
            challenge.get("realm"), challenge.get("service"), scope, credentials.fingerprint()
        )
        token = self._tokens.get(key)
        if token is not None:
            return f"Bearer {token}", key, False
        with self._tokens.fetch_lock(key):
            token = self._tokens.get(key)
            if token is not None:
                return f"Bearer {token}", key, False
            token, expires_at = self._fetch_token(challenge, scope, repo, credentials, tls)
            self._tokens.put(key, token, expires_at)
            return f"Bearer {token}", key, True

    def _fetch_token(
        self,
        challenge: Challenge,
        scope: str,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
    ) -> tuple[str, float]:
        breaker_key = (repo.registry, credentials.fingerprint())
        sent_at = self._clock()
        request = auth.token_request(challenge, scope, credentials, post=True)
        reply = self._send_token(repo.registry, tls, request)
        if request.method == "POST" and reply.status in (404, 405):
            request = auth.token_request(challenge, scope, credentials, post=False)
            reply = self._send_token(repo.registry, tls, request)
        if reply.status in (401, 403):
            self._breaker.failure(breaker_key)
            raise RegistryAuthError(
                f"{repo.registry}: token service refused the credentials (HTTP {reply.status})"
            )
        if reply.status != 200:
            raise RegistryAuthError(f"{repo.registry}: token service answered HTTP {reply.status}")
        return auth.parse_token_response(reply.body, sent_at)

    def _send_token(self, registry: str, tls: TLSOptions, request: httpx.Request) -> Reply:
        return self._exchanger.send(
            registry,
            tls,
            request.method,
            request.url,
            request.headers,
            None,
            TOKEN_BODY_LIMIT,
            content=request.read() if request.method == "POST" else None,
        )


def _pick(challenges: list[Challenge]) -> Challenge | None:
    """Prefer Bearer (with a realm) over Basic; ignore schemes we cannot answer."""
    for challenge in challenges:
        if challenge.scheme == "bearer" and challenge.get("realm"):
            return challenge
    for challenge in challenges:
        if challenge.scheme == "basic":
            return challenge
    return None
