"""One logical registry request with auth: challenge, token, retry with a fresh token.

``Session.request`` remembers which challenge each registry answered with, so after the
first contact requests carry a cached token and cost no extra 401 round trip. A cached
token that is refused gets one refresh; a fresh one that is refused, or
``insufficient_scope``, is final.

Credentials go to the registry's own origin (scheme, host, port) and to the token realm
that origin challenged with, nowhere else: a request for another origin is refused before
anything is attached, and a challenge from a server a redirect led to is not answered.

Auth failures feed the breaker under two keys. A token service refusing the username and
password (401 to credentials), or a registry refusing a password or registry token, is the
credentials' fault on the whole registry: (registry, credentials). Anything else is a
repository these credentials may not read (403, ``insufficient_scope``, a fresh token
refused, a token service refusing the scope, anonymous callers included): (registry,
credentials, repository), so one tenant's denied repositories never silence another's
working ones. An open breaker short-circuits before anything is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import httpx

from exporter.model import Credentials, RepositoryRef, TLSOptions
from exporter.registry import auth
from exporter.registry.backoff import AuthBreaker, BreakerKey
from exporter.registry.challenge import Challenge, parse_challenges
from exporter.registry.errors import (
    RegistryAuthBackoff,
    RegistryAuthError,
    RegistryConfigError,
    RegistryProtocolError,
)
from exporter.registry.exchange import Exchanger, Reply
from exporter.registry.pools import Origin, origin, registry_origin, show_origin

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
        url: httpx.URL,
        *,
        headers: Mapping[str, str],
        max_bytes: int,
    ) -> Reply:
        """Send with auth; returns any non-auth answer (the caller maps 404 and the rest)."""
        home = registry_origin(repo.registry, tls.insecure)
        if origin(url) != home:
            raise RegistryProtocolError(
                f"{repo}: a request for {show_origin(origin(url))} is not sent: "
                "it is not the registry's origin"
            )
        fingerprint = credentials.fingerprint()
        host_key: BreakerKey = (repo.registry, fingerprint)
        repo_key: BreakerKey = (repo.registry, fingerprint, repo.path)
        self._check_breaker(repo, host_key, repo_key)
        site = (repo.registry, tls.fingerprint())
        with self._lock:
            known = self._challenges.get(site)
        authorization, token_key, fresh = self._authorization(known, repo, credentials, tls, home)
        retried = False
        where = str(repo)
        while True:
            reply = self._exchanger.send(
                repo.registry, tls, method, url, headers, authorization, max_bytes
            )
            if reply.status not in (401, 403):
                self._breaker.success(host_key, repo_key)
                return reply
            if origin(reply.url) != home:
                # httpx dropped the Authorization header on the way; it is not offered either
                raise RegistryProtocolError(
                    f"{where}: redirected to {show_origin(origin(reply.url))}, which asks for "
                    f"credentials (HTTP {reply.status}); none are sent there"
                )
            if reply.status == 403:
                self._breaker.failure(repo_key)
                raise RegistryAuthError(f"{where}: access denied (HTTP 403)")
            challenge = _pick(parse_challenges(reply.headers.get("WWW-Authenticate", "")))
            if challenge is None:
                self._breaker.failure(repo_key)
                raise RegistryAuthError(f"{where}: HTTP 401 without a usable challenge")
            with self._lock:
                self._challenges[site] = challenge
            error = challenge.get("error")
            if error == "insufficient_scope":
                self._breaker.failure(repo_key)
                raise RegistryAuthError(f"{where}: no pull access (insufficient_scope)")
            if retried or (authorization is not None and fresh):
                # a password or registry token refused by the registry is wrong for every
                # repository; a token fresh from the token service refused here is about this one
                self._breaker.failure(host_key if token_key is None else repo_key)
                raise RegistryAuthError(f"{where}: registry rejected the credentials (HTTP 401)")
            if token_key is not None and authorization is not None:
                self._tokens.drop(token_key, authorization.removeprefix("Bearer "))
            retried = True
            authorization, token_key, fresh = self._authorization(
                challenge, repo, credentials, tls, home
            )
            if authorization is None:
                self._breaker.failure(repo_key)
                raise RegistryAuthError(f"{where}: authentication required, no credentials")

    def _check_breaker(
        self, repo: RepositoryRef, host_key: BreakerKey, repo_key: BreakerKey
    ) -> None:
        # the messages stay the same while the condition does (one Event, not one per
        # check); the countdown is for the debug log
        wait = self._breaker.retry_in(host_key)
        if wait > 0:
            log.debug("%s: auth cool-down, %.0fs left", repo.registry, wait)
            raise RegistryAuthBackoff(
                f"{repo.registry}: not contacted for a while after repeated auth failures"
            )
        wait = self._breaker.retry_in(repo_key)
        if wait > 0:
            log.debug("%s: access-denied cool-down, %.0fs left", repo, wait)
            raise RegistryAuthBackoff(
                f"{repo}: not asked for a while after repeated access denials"
            )

    def _authorization(
        self,
        challenge: Challenge | None,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
        home: Origin,
    ) -> tuple[str | None, auth.TokenKey | None, bool]:
        """(Authorization value, token cache key, whether a 401 to it is final).

        Only a cached token deserves a second chance: it may have expired or been revoked.
        """
        if credentials.registry_token:
            if not auth.header_safe(credentials.registry_token):
                raise RegistryConfigError(
                    f"{repo.registry}: the registry token has characters no HTTP header can carry"
                )
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
            token, expires_at = self._fetch_token(challenge, scope, repo, credentials, tls, home)
            self._tokens.put(key, token, expires_at)
            return f"Bearer {token}", key, True

    def _fetch_token(
        self,
        challenge: Challenge,
        scope: str,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
        home: Origin,
    ) -> tuple[str, float]:
        realm = auth.realm_url(repo.registry, challenge.get("realm"), https_only=home[0] == "https")
        fingerprint = credentials.fingerprint()
        sent_at = self._clock()
        request = auth.token_request(realm, challenge, scope, credentials, post=True)
        reply = self._send_token(repo.registry, tls, request)
        if request.method == "POST" and reply.status in (404, 405):
            request = auth.token_request(realm, challenge, scope, credentials, post=False)
            reply = self._send_token(repo.registry, tls, request)
        if reply.status == 401 and credentials.kind != "anonymous":
            self._breaker.failure((repo.registry, fingerprint))  # the credentials themselves
            raise RegistryAuthError(
                f"{repo.registry}: token service refused the credentials (HTTP 401)"
            )
        if reply.status in (401, 403):
            self._breaker.failure((repo.registry, fingerprint, repo.path))
            raise RegistryAuthError(
                f"{repo}: token service refused pull access (HTTP {reply.status})"
            )
        if reply.status != 200:
            raise RegistryAuthError(f"{repo.registry}: token service answered HTTP {reply.status}")
        self._breaker.success((repo.registry, fingerprint))
        return auth.parse_token_response(reply.body, sent_at)

    def _send_token(self, registry: str, tls: TLSOptions, request: httpx.Request) -> Reply:
        post = request.method == "POST"
        return self._exchanger.send(
            registry,
            tls,
            request.method,
            request.url,
            request.headers,
            None,
            TOKEN_BODY_LIMIT,
            content=request.read() if post else None,
            # a redirect would carry the refresh token in the body to wherever it points;
            # httpx drops only the Authorization header of a GET on a cross-origin redirect
            follow_redirects=not post,
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
