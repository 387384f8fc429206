"""Tag cache semantics, against an in-memory lister implementing the client's protocol."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from exporter.model import ANONYMOUS, DEFAULT_TLS, Credentials, RepositoryRef, TLSOptions
from exporter.registry.cache import TagCache
from exporter.registry.errors import (
    RegistryNotFound,
    RegistryRateLimited,
    RegistryUnavailable,
)

REPO = RepositoryRef("registry.example:5000", "group/app")
OTHER = RepositoryRef("registry.example:5000", "group/other")
ALICE = Credentials(username="alice", password="a-secret")
BOB = Credentials(username="bob", password="b-secret")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Lister:
    """Answers from a dict; counts calls; can be told to fail or to block."""

    def __init__(self) -> None:
        self.tags: dict[RepositoryRef, list[str]] = {REPO: ["v1.0.0"], OTHER: ["1.0.0"]}
        self.calls: Counter[tuple[RepositoryRef, str]] = Counter()
        self.digest_calls = 0
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def list_tags(
        self,
        repo: RepositoryRef,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> list[str]:
        self.calls[(repo, credentials.kind + credentials.fingerprint())] += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        if credentials == BOB:
            return ["bob-only"]
        return list(self.tags[repo])

    def resolve_digest(
        self,
        repo: RepositoryRef,
        reference: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> str:
        self.digest_calls += 1
        if self.fail is not None:
            raise self.fail
        return "sha256:" + f"{len(reference):064d}"

    def manifest_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> float | None:
        return None


def test_hit_within_ttl_and_refetch_after() -> None:
    clock, lister = Clock(), Lister()
    cache = TagCache(lister, ttl=60, clock=clock)
    assert cache.tags(REPO).tags == ("v1.0.0",)
    lister.tags[REPO].append("v1.1.0")
    clock.now += 59
    assert cache.tags(REPO).tags == ("v1.0.0",)
    clock.now += 2
    listing = cache.tags(REPO)
    assert listing.tags == ("v1.0.0", "v1.1.0")
    assert listing.fetched_at == clock.now
    assert not listing.stale
    assert sum(lister.calls.values()) == 2
    stats = cache.stats()
    assert (stats.requests, stats.hits, stats.fetches) == (3, 1, 2)


def test_credentials_and_tls_are_part_of_the_key() -> None:
    clock, lister = Clock(), Lister()
    cache = TagCache(lister, ttl=60, clock=clock)
    assert cache.tags(REPO, ALICE).tags == ("v1.0.0",)
    assert cache.tags(REPO, BOB).tags == ("bob-only",)
    assert cache.tags(REPO, ALICE).tags == ("v1.0.0",)
    cache.tags(REPO, ALICE, TLSOptions(insecure=True))
    assert len(lister.calls) == 2 and sum(lister.calls.values()) == 3


def test_concurrent_misses_coalesce_into_one_request() -> None:
    clock, lister = Clock(), Lister()
    lister.gate = threading.Event()
    cache = TagCache(lister, ttl=60, clock=clock)
    results: list[tuple[str, ...]] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.tags(REPO).tags)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert lister.entered.wait(5)
    lister.gate.set()
    for t in threads:
        t.join(5)
    assert results == [("v1.0.0",)] * 8
    assert sum(lister.calls.values()) == 1


def test_failure_serves_last_good_marked_stale_and_is_remembered() -> None:
    clock, lister = Clock(), Lister()
    cache = TagCache(lister, ttl=60, clock=clock)
    first = cache.tags(REPO)
    clock.now += 61
    lister.fail = RegistryUnavailable("registry.example:5000 answered 503")
    stale = cache.tags(REPO)
    assert stale.stale and stale.error == "unavailable"
    assert stale.tags == first.tags and stale.fetched_at == first.fetched_at
    clock.now += 30
    assert cache.tags(REPO).stale
    assert sum(lister.calls.values()) == 2  # the failure is not retried within the TTL
    lister.fail = None
    clock.now += 31
    fresh = cache.tags(REPO)
    assert not fresh.stale and fresh.error is None


def test_failure_without_good_answer_raises_until_ttl_ends() -> None:
    clock, lister = Clock(), Lister()
    lister.fail = RegistryNotFound("registry.example:5000/group/app: repository unknown")
    cache = TagCache(lister, ttl=60, clock=clock)
    for _ in range(3):
        with pytest.raises(RegistryNotFound):
            cache.tags(REPO)
    assert sum(lister.calls.values()) == 1
    lister.fail = None
    clock.now += 60
    assert cache.tags(REPO).tags == ("v1.0.0",)


def test_rate_limit_holds_for_retry_after_when_longer_than_ttl() -> None:
    clock, lister = Clock(), Lister()
    cache = TagCache(lister, ttl=10, clock=clock)
    cache.tags(REPO)
    clock.now += 11
    lister.fail = RegistryRateLimited("429", retry_after=120)
    assert cache.tags(REPO).error == "rate_limited"
    lister.fail = None
    clock.now += 60
    assert cache.tags(REPO).stale
    clock.now += 61
    assert not cache.tags(REPO).stale
    assert sum(lister.calls.values()) == 3


def test_size_is_bounded() -> None:
    clock, lister = Clock(), Lister()
    cache = TagCache(lister, ttl=60, clock=clock, max_entries=1)
    cache.tags(REPO)
    cache.tags(OTHER)
    cache.tags(REPO)
    assert sum(lister.calls.values()) == 3


def test_digests_are_cached_per_tag() -> None:
    clock, lister = Clock(), Lister()
    cache = TagCache(lister, ttl=60, clock=clock)
    assert cache.digest(REPO, "latest") == ("sha256:" + f"{6:064d}", False)
    cache.digest(REPO, "latest")
    cache.digest(REPO, "v1.0.0")
    assert lister.digest_calls == 2


def test_creation_times_are_asked_once_for_concurrent_objects() -> None:
    import threading

    calls: list[str] = []
    gate = threading.Event()

    class Slow(Lister):
        def manifest_created(
            self,
            repo: RepositoryRef,
            digest: str,
            credentials: Credentials = ANONYMOUS,
            tls: TLSOptions = DEFAULT_TLS,
        ) -> float | None:
            calls.append(digest)
            gate.wait(5)
            return 1234.0

    cache = TagCache(Slow(), ttl=60, clock=lambda: 0.0)
    repo = RepositoryRef("r.example", "app")
    results: list[float | None] = []
    threads = [threading.Thread(target=lambda: results.append(cache.created(repo, "sha256:x")))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [1234.0] * 8 and calls == ["sha256:x"]
