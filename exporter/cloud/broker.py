"""Registry credentials from a cloud identity, cached as Flux caches them.

One :class:`Issuer` per provider turns an identity into a registry username and password
that expire: the controller's identity (the exporter pod's: IRSA or EKS Pod Identity,
the GKE metadata server, Azure workload identity) or an object's ServiceAccount
(:class:`ObjectIdentity`, object-level workload identity). :class:`CloudCredentials`
caches them per (provider, identity, registry key), for 80 % of their lifetime and at most
an hour (fluxcd/pkg ``cache.TokenCache``), with one exchange in flight per key. A failure
is remembered briefly too: a role that refuses would otherwise be asked once per object
and per check. An object's identity is keyed by its namespace and ServiceAccount, so it
serves only that namespace's objects.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from exporter.cloud.errors import CloudAuthError, CloudError
from exporter.flux.cloud import (
    AWS_ROLE_ANNOTATION,
    AZURE_CLIENT_ANNOTATION,
    AZURE_TENANT_ANNOTATION,
    GCP_PROVIDER_ANNOTATION,
    GCP_SERVICE_ACCOUNT_ANNOTATION,
    AzureEnvironment,
    CloudRegistry,
    Provider,
    match_registry,
)
from exporter.model import Credentials

MAX_LIFETIME = 3600.0  # seconds: Flux's --token-cache-max-duration default
USE_FRACTION = 0.8  # of a token's lifetime (kubelet's and Flux's rotation threshold)
FAILURE_TTL = 30.0  # seconds a failed exchange is answered from memory
MAX_ENTRIES = 1024
IDENTITY_ANNOTATIONS: Mapping[Provider, tuple[str, ...]] = {
    Provider.AWS: (AWS_ROLE_ANNOTATION,),
    Provider.GCP: (GCP_SERVICE_ACCOUNT_ANNOTATION, GCP_PROVIDER_ANNOTATION),
    Provider.AZURE: (AZURE_TENANT_ANNOTATION, AZURE_CLIENT_ANNOTATION),
    Provider.GENERIC: (),
}


@dataclass(frozen=True)
class ObjectIdentity:
    """An object's ServiceAccount, for object-level workload identity.

    ``token`` mints a token for this account with the given audience (the TokenRequest
    API); ``annotations`` are the account's, where the cloud identity is named.
    """

    namespace: str
    name: str
    annotations: Mapping[str, str] = field(hash=False)
    token: Callable[[str], str] = field(compare=False, hash=False, repr=False)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Issued:
    """Registry credentials and when they expire (Unix seconds)."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    expires_at: float


class Issuer(Protocol):
    def controller(self, registry: CloudRegistry) -> Issued: ...

    def for_account(self, registry: CloudRegistry, identity: ObjectIdentity) -> Issued: ...


class CloudCredentials:
    """Dispatches to the provider's issuer and caches what it issues; thread-safe."""

    def __init__(
        self,
        issuers: Mapping[Provider, Issuer],
        *,
        clock: Callable[[], float] = time.time,
        failure_ttl: float = FAILURE_TTL,
        azure_environment: Callable[[], AzureEnvironment | None] = lambda: None,
    ) -> None:
        self._issuers = dict(issuers)
        self._azure_environment = azure_environment
        self._clock = clock
        self._failure_ttl = failure_ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Credentials | CloudError]] = OrderedDict()
        self._flights: dict[str, threading.Lock] = {}
        self.exchanges = 0  # how many times an issuer was asked (tests, debugging)

    def match(self, provider: Provider, registry: str) -> CloudRegistry:
        """``registry`` as ``provider`` reads it; raises CloudMismatch (or CloudError, for an
        unreadable Azure environment file)."""
        azure = self._azure_environment() if provider is Provider.AZURE else None
        return match_registry(provider, registry, azure=azure)

    def credentials(
        self, registry: CloudRegistry, identity: ObjectIdentity | None = None
    ) -> Credentials:
        """Credentials for ``registry``; raises CloudError (the same one for a while)."""
        key = _key(registry, identity)
        hit = self._cached(key)
        if hit is not None:
            return hit
        with self._flight(key):
            hit = self._cached(key)
            if hit is not None:
                return hit
            issuer = self._issuers.get(registry.provider)
            if issuer is None:
                raise CloudAuthError(f"provider {registry.provider.value!r}: not configured")
            now = self._clock()
            self.exchanges += 1
            try:
                if identity is None:
                    issued = issuer.controller(registry)
                else:
                    issued = issuer.for_account(registry, identity)
            except CloudError as exc:
                self._store(key, now + self._failure_ttl, exc)
                raise
            credentials = Credentials(issued.username, issued.password, issuer=key)
            lifetime = min(MAX_LIFETIME, (issued.expires_at - now) * USE_FRACTION)
            if lifetime > 0:
                self._store(key, now + lifetime, credentials)
            return credentials

    def _cached(self, key: str) -> Credentials | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        value = entry[1]
        if isinstance(value, CloudError):
            raise type(value)(str(value))  # a fresh one: threads may raise it at once
        return value

    def _store(self, key: str, until: float, value: Credentials | CloudError) -> None:
        with self._lock:
            self._entries[key] = (until, value)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def _flight(self, key: str) -> threading.Lock:
        with self._lock:
            lock = self._flights.get(key)
            if lock is None:
                if len(self._flights) > MAX_ENTRIES:
                    self._flights.clear()
                lock = self._flights[key] = threading.Lock()
            return lock


def _key(registry: CloudRegistry, identity: ObjectIdentity | None) -> str:
    """(provider, identity, registry key) as text; it names no secret. An object's identity
    is its namespace, its ServiceAccount and the cloud identity the account's annotations
    name (a changed annotation is another identity)."""
    who = "controller"
    if identity is not None:
        named = (identity.annotations.get(a, "") for a in IDENTITY_ANNOTATIONS[registry.provider])
        who = "\x00".join((f"serviceaccount:{identity}", *named))
    return "\x00".join((registry.provider.value, who, registry.key))
