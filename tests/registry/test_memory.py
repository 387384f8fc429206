"""What a hostile registry sends is freed once the listing fails.

A failed listing is remembered by the tag cache for one TTL (so that a broken registry is
not asked again by every object); what is remembered must be the failure, not what the
request read. Each case reads up to the 1 MiB cap per check: kept, eight checks would hold
about 8 MiB. The soak over minutes is ``benchmarks/bench_hostile_memory.py``.
"""

from __future__ import annotations

import gc
import gzip
import json
import tracemalloc
from collections.abc import Iterator

import pytest

from exporter.model import ANONYMOUS, RepositoryRef, TLSOptions
from exporter.registry.backoff import RetryPolicy
from exporter.registry.cache import TagCache
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryError, RegistryProtocolError
from tests.fixtures.faultregistry import Answer, FaultRegistry, endless_listing, hostile_answers

PLAIN = TLSOptions(insecure=True)
TAGS = "/v2/team/app/tags/list"
CAP = 1 << 20
CHECKS = 8

HOSTILE = sorted(hostile_answers("team/app"))


@pytest.fixture
def registry() -> Iterator[FaultRegistry]:
    with FaultRegistry() as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("case", HOSTILE)
def test_failed_listings_leave_nothing_behind(registry: FaultRegistry, case: str) -> None:
    registry.route(TAGS, hostile_answers("team/app")[case])
    clock = Clock()
    client = RegistryClient(
        retry_policy=RetryPolicy(retries=0, retry_rate_limited=False),
        max_response_bytes=CAP,
        max_listing_bytes=CAP,
        max_pages=60,
        deadline=20,
    )
    cache = TagCache(client, ttl=10, clock=clock)
    repo = RepositoryRef(registry.host, "team/app")
    errors: list[str] = []

    def check() -> None:
        clock.now += 11  # the remembered failure has run out: fetch again
        try:
            cache.tags(repo, ANONYMOUS, PLAIN)
        except RegistryError as exc:
            errors.append(str(exc))
        else:
            pytest.fail("a hostile listing was accepted")

    with client:
        tracemalloc.start()
        try:
            check()
            check()
            registry.forget()  # what the server records is the test's, not the exporter's
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(CHECKS):
                check()
            peak = tracemalloc.get_traced_memory()[1] - before
            registry.forget()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert len(set(errors)) == 1, errors  # the same failure every time
    assert grown < CAP // 4, f"{grown} bytes kept after {CHECKS} failed listings"
    # while reading: the body up to its cap, joined once; never what a bomb inflates to
    assert peak < 4 * CAP, f"{peak} bytes at the peak of a capped listing"


def test_a_gzipped_listing_is_read_and_a_corrupt_one_refused(registry: FaultRegistry) -> None:
    body = gzip.compress(json.dumps({"name": "team/app", "tags": ["1.0.0", "1.1.0"]}).encode())
    zipped = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    registry.route(TAGS, Answer(200, zipped, body))
    registry.route("/v2/team/bad/tags/list", Answer(200, zipped, body[:-12]))
    registry.route("/v2/team/odd/tags/list", Answer(200, (("Content-Encoding", "br"),), b"{}"))
    with RegistryClient(retry_policy=RetryPolicy(retries=0)) as client:
        assert client.list_tags(RepositoryRef(registry.host, "team/app"), ANONYMOUS, PLAIN) == [
            "1.0.0",
            "1.1.0",
        ]
        for path in ("team/bad", "team/odd"):
            with pytest.raises(RegistryProtocolError, match="cannot be decoded"):
                client.list_tags(RepositoryRef(registry.host, path), ANONYMOUS, PLAIN)
    assert {s.headers.get("accept-encoding") for s in registry.requests()} == {"gzip"}


def test_a_remembered_failure_carries_no_traceback_or_cause(registry: FaultRegistry) -> None:
    registry.route(TAGS, endless_listing("team/app"))
    clock = Clock()
    with RegistryClient(max_response_bytes=CAP, retry_policy=RetryPolicy(retries=0)) as client:
        cache = TagCache(client, ttl=10, clock=clock)
        repo = RepositoryRef(registry.host, "team/app")
        raised = []
        for _ in range(3):  # the first fetches, the others are answered from memory
            with pytest.raises(RegistryError) as info:
                cache.tags(repo, ANONYMOUS, PLAIN)
            raised.append(info.value)
    assert len(registry.requests()) == 1
    assert len({id(e) for e in raised}) == 3  # each raise is a copy: no traceback grows
    for error in raised:
        assert error.__cause__ is None and error.__context__ is None
        assert str(error) == str(raised[0]) and type(error) is type(raised[0])


def test_an_empty_answer_marked_gzip_is_just_empty(registry: FaultRegistry) -> None:
    """A proxy's bare 404 or 401 says gzip and sends nothing: not a corrupt body."""
    registry.route(TAGS, Answer(404, (("Content-Encoding", "gzip"),), b""))
    client = RegistryClient(retry_policy=RetryPolicy(retries=0))
    with client, pytest.raises(RegistryError) as info:
        client.list_tags(RepositoryRef(registry.host, "team/app"), ANONYMOUS, PLAIN)
    assert info.value.reason == "not_found"
