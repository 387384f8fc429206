"""The Docker token dance, minus the sending: build token requests, read answers, cache tokens.

A registry answers 401 with a ``Bearer`` challenge naming a token service (``realm``),
a ``service`` and a ``scope``. We ask the realm for a token (anonymously, with Basic
credentials, or with an OAuth2 refresh token when the docker config holds an
``identitytoken``) and retry with ``Authorization: Bearer``. Tokens are cached per
(realm, service, scope, credentials) until shortly before they expire, so a fleet of
polls costs one token request per TTL, not one per listing. The client sends what this
module builds, so the same retry, concurrency and metrics apply to token requests.

Like Docker's clients we send credentials to whichever realm the registry names, but never
over plain HTTP when the registry itself is HTTPS: the password or refresh token, and the
token that comes back, would cross the network in clear.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from exporter.model import Credentials
from exporter.registry.challenge import Challenge
from exporter.registry.errors import RegistryProtocolError
from exporter.registry.pools import origin, show_origin

DEFAULT_EXPIRES_IN = 60.0  # seconds: the token spec's default when expires_in is absent
EXPIRY_MARGIN = 10.0  # seconds: refresh this much before a token expires
MIN_LIFETIME = 5.0  # seconds: never trust a token for less (clock skew, tiny expires_in)
CLIENT_ID = "flux-oci-trigger"


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def header_safe(value: str) -> bool:
    """Whether ``value`` can follow ``Bearer `` in a header: printable ASCII only."""
    return value.isascii() and value.isprintable()


def pull_scope(repository_path: str) -> str:
    return f"repository:{repository_path}:pull"


@dataclass(frozen=True)
class TokenKey:
    realm: str
    service: str
    scope: str
    credentials: str  # Credentials.fingerprint()


def realm_url(registry: str, realm: str, *, https_only: bool) -> httpx.URL:
    """The token service's URL from a challenge; ``https_only`` for an HTTPS registry."""
    try:
        url = httpx.URL(realm)
        usable = url.scheme in ("http", "https") and bool(url.raw_host)
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise RegistryProtocolError(f"{registry}: the token realm is not a valid URL") from exc
    if not usable:
        raise RegistryProtocolError(f"{registry}: the token realm is not an http(s) URL")
    if https_only and url.scheme == "http":
        raise RegistryProtocolError(
            f"{registry}: the token realm {show_origin(origin(url))} is plain HTTP while the "
            "registry is HTTPS; no credentials are sent and no token is asked there"
        )
    return url


def token_request(
    realm: httpx.URL, challenge: Challenge, scope: str, credentials: Credentials, *, post: bool
) -> httpx.Request:
    """The request for a token at ``realm`` (checked by ``realm_url``). ``post`` selects the
    OAuth2 form (refresh-token grant)."""
    service = challenge.get("service")
    if post and credentials.identity_token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.identity_token,
            "client_id": CLIENT_ID,
            "scope": scope,
        }
        if service:
            form["service"] = service
        return httpx.Request("POST", realm, data=form)
    params = {"scope": scope}
    if service:
        params["service"] = service
    headers: dict[str, str] = {}
    if credentials.identity_token:
        # Fallback for token servers without the OAuth2 endpoint: the refresh token as password.
        headers["Authorization"] = basic_header(
            credentials.username or "<token>", credentials.identity_token
        )
    elif credentials.kind == "basic":
        headers["Authorization"] = basic_header(
            credentials.username or "", credentials.password or ""
        )
    return httpx.Request("GET", realm, params=params, headers=headers)


def parse_token_response(body: bytes, now: float) -> tuple[str, float]:
    """(token, expiry in the caller's monotonic clock) from a token endpoint's JSON body.

    ``now`` is the caller's monotonic time when the request was sent; ``issued_at`` is
    only validated, since comparing it with a local wall clock would import skew.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested beyond reason
        raise RegistryProtocolError("token endpoint returned invalid JSON") from exc
    if not isinstance(doc, dict):
        raise RegistryProtocolError("token endpoint returned a non-object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryProtocolError("token endpoint returned no token")
    if not header_safe(token):
        raise RegistryProtocolError("token endpoint returned a token no HTTP header can carry")
    expires_in = doc.get("expires_in", DEFAULT_EXPIRES_IN)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    issued_at = doc.get("issued_at")
    if issued_at is not None:
        try:
            datetime.fromisoformat(str(issued_at))
        except ValueError as exc:
            raise RegistryProtocolError("token endpoint returned an invalid issued_at") from exc
    lifetime = max(MIN_LIFETIME, float(expires_in) - EXPIRY_MARGIN)
    return token, now + lifetime


class TokenCache:
    """Thread-safe token store with one in-flight fetch per key (concurrent misses coalesce)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_entries: int = 4096
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._fetch_locks: dict[TokenKey, threading.Lock] = {}

    def get(self, key: TokenKey) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._tokens[key]
                return None
            return entry[0]

    def put(self, key: TokenKey, token: str, expires_at: float) -> None:
        with self._lock:
            if len(self._tokens) >= self._max_entries:
                now = self._clock()
                for stale in [k for k, (_, exp) in self._tokens.items() if exp <= now]:
                    del self._tokens[stale]
                if len(self._tokens) >= self._max_entries:
                    self._tokens.pop(next(iter(self._tokens)))
            self._tokens[key] = (token, expires_at)

    def drop(self, key: TokenKey, token: str) -> None:
        """Forget ``token`` (the registry rejected it) unless another thread already replaced it."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry is not None and entry[0] == token:
                del self._tokens[key]

    def fetch_lock(self, key: TokenKey) -> threading.Lock:
        with self._lock:
            lock = self._fetch_locks.get(key)
            if lock is None:
                if len(self._fetch_locks) >= self._max_entries:
                    self._fetch_locks.clear()
                lock = self._fetch_locks[key] = threading.Lock()
            return lock
