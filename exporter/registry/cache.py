"""A TTL cache over the registry client, shared by every object on the same repository.

Why: a cluster may hold a thousand Flux objects on a couple of hundred repositories. The
registry must see one tag listing per repository *and access* per TTL, not one per object.
The key holds the credential and TLS fingerprints, so one tenant's pull secret never
answers for another tenant's object on the same repository.

Behaviour:
- a fresh entry is a hit; concurrent misses for one key wait for a single request;
- on failure the last good answer is served, marked ``stale`` with the failure's reason,
  and the failure is remembered for one TTL (or the registry's Retry-After, if longer,
  up to ``max_retry_after``: one answer must not park a repository for days), so a broken
  registry is not hammered by every object and every pass;
- with no good answer to fall back on, the failure is raised again (same class) until the
  TTL ends;
- the number of entries is bounded (least recently used go first);
- the clock is injected.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from cachetools import LRUCache

from exporter.model import (
    ANONYMOUS,
    CacheKey,
    Credentials,
    RepositoryRef,
    TagListing,
    TLSOptions,
)
from exporter.registry.errors import RegistryError, RegistryRateLimited

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_RETRY_AFTER = 600.0  # seconds: the longest a registry's Retry-After holds a failure


class TagLister(Protocol):
    """The part of the registry client the cache needs."""

    def list_tags(
        self, repo: RepositoryRef, credentials: Credentials = ..., tls: TLSOptions = ...
    ) -> list[str]: ...

    def resolve_digest(
        self,
        repo: RepositoryRef,
        reference: str,
        credentials: Credentials = ...,
        tls: TLSOptions = ...,
    ) -> str: ...

    def manifest_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ...,
        tls: TLSOptions = ...,
    ) -> float | None: ...


@dataclass
class _Entry(Generic[T]):
    value: T | None  # last good value, if any
    fetched_at: float  # when ``value`` was fetched
    expires_at: float  # until when neither a value nor a failure is refetched
    error: RegistryError | None = None  # the latest failure, while it is remembered


@dataclass
class _Flight:
    done: threading.Event


@dataclass(frozen=True)
class CacheStats:
    requests: int
    hits: int
    fetches: int


class _TTLMap(Generic[T]):
    """Bounded TTL map with coalesced misses and stale-on-error."""

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float],
        max_entries: int,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self._ttl = ttl
        self._max_retry_after = max_retry_after
        self._clock = clock
        self._entries: LRUCache[Hashable, _Entry[T]] = LRUCache(maxsize=max_entries)
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self.hits = 0
        self.fetches = 0

    def get(self, key: Hashable, fetch: Callable[[], T]) -> tuple[T, float, RegistryError | None]:
        """Return (value, fetched_at, error); ``error`` set means the value is stale."""
        with self._lock:
            self.requests += 1
        while True:
            with self._lock:
                entry = self._entries.get(key)
                now = self._clock()
                if entry is not None and now < entry.expires_at:
                    self.hits += 1
                    return self._answer(entry)
                flight = self._flights.get(key)
                if flight is None:
                    flight = _Flight(threading.Event())
                    self._flights[key] = flight
                    leader = True
                else:
                    leader = False
            if not leader:
                flight.done.wait()
                with self._lock:
                    entry = self._entries.get(key)
                    if entry is not None:
                        self.hits += 1
                        return self._answer(entry)
                continue  # evicted meanwhile: try again
            try:
                return self._fetch(key, fetch, entry)
            finally:
                with self._lock:
                    del self._flights[key]
                flight.done.set()

    def peek(self, key: Hashable) -> tuple[T | None, RegistryError | None] | None:
        """What ``get`` would answer without fetching, as (value, error); None: it would
        fetch."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() >= entry.expires_at:
                return None
            return entry.value, entry.error

    def expire(self, matches: Callable[[Hashable], bool]) -> int:
        """Make matching entries due for a refetch (their last good value stays, for
        stale-on-error); returns how many."""
        with self._lock:
            found = [k for k in self._entries if matches(k)]
            for key in found:
                self._entries[key].expires_at = float("-inf")
            return len(found)

    def _fetch(
        self, key: Hashable, fetch: Callable[[], T], previous: _Entry[T] | None
    ) -> tuple[T, float, RegistryError | None]:
        with self._lock:
            self.fetches += 1
        try:
            value = fetch()
        except RegistryError as exc:
            failure, hold = _detached(exc), self._hold(exc)
        else:
            now = self._clock()
            entry = _Entry(value=value, fetched_at=now, expires_at=now + self._ttl)
            with self._lock:
                self._entries[key] = entry
            return value, now, None
        # out of the except block: raised again, the failure gets no __context__
        now = self._clock()
        entry = _Entry(
            value=previous.value if previous else None,
            fetched_at=previous.fetched_at if previous else now,
            expires_at=now + hold,
            error=failure,
        )
        with self._lock:
            self._entries[key] = entry
        return self._answer(entry)

    def _hold(self, exc: RegistryError) -> float:
        """How long a failure is remembered: one TTL, or what the registry asked, capped."""
        if not isinstance(exc, RegistryRateLimited) or not exc.retry_after:
            return self._ttl
        honoured = max(self._ttl, min(exc.retry_after, self._max_retry_after))
        level = logging.INFO if honoured < exc.retry_after else logging.DEBUG
        log.log(
            level, "%s: Retry-After asked %.0fs, honoured %.0fs", exc, exc.retry_after, honoured
        )
        return honoured

    @staticmethod
    def _answer(entry: _Entry[T]) -> tuple[T, float, RegistryError | None]:
        if entry.value is None:
            assert entry.error is not None
            raise _detached(entry.error)  # a copy: raising one object again grows its traceback
        return entry.value, entry.fetched_at, entry.error


def _detached(exc: RegistryError) -> RegistryError:
    """The same error (class, message, ``retry_after``) without its traceback, cause or
    context. A remembered failure must not keep what the failed request read alive: the
    frames of a traceback hold their locals (the pages and chunks of a capped listing,
    about its cap) and the previous cache entry, whose error held the one before it, so
    kept as raised, every failure would stay in memory for good."""
    bare = copy.copy(exc)  # class(*args) and __dict__: no __traceback__, __cause__, __context__
    bare.__traceback__ = None
    bare.__cause__ = None
    bare.__context__ = None
    bare.__suppress_context__ = True
    return bare


class TagCache:
    """Tag listings and tag digests, cached per (repository, credentials, TLS) for ``ttl``
    seconds; a rate-limited failure is held for the registry's Retry-After, at most
    ``max_retry_after`` seconds."""

    def __init__(
        self,
        lister: TagLister,
        *,
        ttl: float,
        clock: Callable[[], float],
        max_entries: int = 10_000,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self._lister = lister
        self._tags: _TTLMap[tuple[str, ...]] = _TTLMap(ttl, clock, max_entries, max_retry_after)
        self._digests: _TTLMap[str] = _TTLMap(ttl, clock, max_entries, max_retry_after)
        # creation times are content-addressed: kept a day, asked once however many objects
        # share the artifact (concurrent misses wait for one request)
        self._created: _TTLMap[tuple[float | None]] = _TTLMap(86400.0, clock, max_entries)

    def tags(
        self,
        repo: RepositoryRef,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions | None = None,
    ) -> TagListing:
        """The repository's tags; raises the registry's error only when nothing good is known."""
        tls = tls or TLSOptions()
        key = CacheKey(repo, credentials.fingerprint(), tls.fingerprint())
        tags, fetched_at, error = self._tags.get(
            key, lambda: tuple(self._lister.list_tags(repo, credentials, tls))
        )
        return TagListing(
            repository=repo,
            tags=tags,
            fetched_at=fetched_at,
            stale=error is not None,
            error=error.reason if error is not None else None,
        )

    def digest(
        self,
        repo: RepositoryRef,
        tag: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions | None = None,
    ) -> tuple[str, bool]:
        """The manifest digest the tag points at now, and whether that answer is stale."""
        tls = tls or TLSOptions()
        key = (CacheKey(repo, credentials.fingerprint(), tls.fingerprint()), tag)
        digest, _, error = self._digests.get(
            key, lambda: self._lister.resolve_digest(repo, tag, credentials, tls)
        )
        return digest, error is not None

    def expire(self, repo: RepositoryRef) -> int:
        """Refetch this repository's tags and digests on their next use, whatever the
        credentials (a push event names the repository, not who reads it)."""

        def ours(key: Hashable) -> bool:
            cache_key = key[0] if isinstance(key, tuple) else key
            return isinstance(cache_key, CacheKey) and cache_key.repository == repo

        return self._tags.expire(ours) + self._digests.expire(ours)

    def expire_digest(
        self, repo: RepositoryRef, tag: str, credentials: Credentials, tls: TLSOptions
    ) -> None:
        key = (CacheKey(repo, credentials.fingerprint(), tls.fingerprint()), tag)
        self._digests.expire(lambda k: k == key)

    def created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions | None = None,
    ) -> float | None:
        """When the artifact was built (its ``org.opencontainers.image.created``), if it
        says; None when unknown or unreadable. Content-addressed: the client keeps it."""
        tls = tls or TLSOptions()
        key = (CacheKey(repo, credentials.fingerprint(), tls.fingerprint()), digest)

        def fetch() -> tuple[float | None]:
            return (self._lister.manifest_created(repo, digest, credentials, tls),)

        try:
            (created,), _, _ = self._created.get(key, fetch)
        except RegistryError:
            return None  # only the lag's start depends on it: first seen is the fallback
        return created

    def known_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions | None = None,
    ) -> tuple[float | None] | None:
        """What :meth:`created` would answer from memory, without asking the registry:
        ``(created,)``, or None when it must be read."""
        tls = tls or TLSOptions()
        key = (CacheKey(repo, credentials.fingerprint(), tls.fingerprint()), digest)
        known = self._created.peek(key)
        if known is None:
            return None
        value, _ = known  # a failure with no good value answers None, as ``created`` does
        return value if value is not None else (None,)

    def stats(self) -> CacheStats:
        """Counts over tag listings (the expensive call): asked, answered from cache, fetched."""
        return CacheStats(self._tags.requests, self._tags.hits, self._tags.fetches)
