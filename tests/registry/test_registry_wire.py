"""Wire cases a real registry will not produce on demand, played with httpx.MockTransport:
rate limits, flaky 5xx, timeouts, odd pagination links, oversized and broken bodies."""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from exporter.model import RepositoryRef
from exporter.registry.backoff import RetryPolicy
from exporter.registry.client import RegistryClient
from exporter.registry.errors import (
    RegistryNotFound,
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnavailable,
)

from .conftest import RecordingObserver

REPO = RepositoryRef.parse("oci://registry.test/team/app")
TAGS_URL = "https://registry.test/v2/team/app/tags/list"
Handler = Callable[[httpx.Request], httpx.Response]


def tags(*names: str, link: str | None = None) -> httpx.Response:
    headers = {"Link": f'<{link}>; rel="next"'} if link else {}
    return httpx.Response(200, json={"name": "team/app", "tags": list(names)}, headers=headers)


def make_client(
    handler: Handler, sleeps: list[float] | None = None, **kwargs: object
) -> RegistryClient:
    return RegistryClient(
        transport=httpx.MockTransport(handler),
        sleep=(sleeps.append if sleeps is not None else lambda _: None),
        retry_policy=RetryPolicy(rng=lambda: 1.0),  # deterministic: the upper bound of the jitter
        **kwargs,  # type: ignore[arg-type]
    )


def sequence(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("HTTP-date in 30 s", 30.0),
        ("3600", 60.0),  # capped
        ("soon", 0.25),  # unusable: plain backoff (attempt 0 = base delay with rng=1)
    ],
)
def test_429_honours_retry_after(header: str, expected: float) -> None:
    if header.startswith("HTTP-date"):
        header = email.utils.formatdate(time.time() + 30, usegmt=True)
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": header}), tags("1.0.0"))
    sleeps: list[float] = []
    observer = RecordingObserver()
    with make_client(handler, sleeps, observer=observer) as client:
        assert client.list_tags(REPO) == ["1.0.0"]
    assert sleeps == [pytest.approx(expected, abs=2.0)]
    assert observer.limited["registry.test"] == 1
    assert observer.codes == {("registry.test", "429"): 1, ("registry.test", "200"): 1}


def test_429_beyond_retries_raises_rate_limited_with_retry_after() -> None:
    handler, seen = sequence(*[httpx.Response(429, headers={"Retry-After": "5"})] * 4)
    with make_client(handler, retries=3) as client, pytest.raises(RegistryRateLimited) as info:
        client.list_tags(REPO)
    assert info.value.retry_after == 5.0
    assert len(seen) == 4


def test_5xx_then_success_backs_off_exponentially() -> None:
    handler, _ = sequence(httpx.Response(503), httpx.Response(502), tags("a", "b"))
    sleeps: list[float] = []
    with make_client(handler, sleeps) as client:
        assert client.list_tags(REPO) == ["a", "b"]
    assert sleeps == [0.25, 0.5]


def test_timeouts_exhaust_retries_into_unavailable() -> None:
    handler, _ = sequence(*[httpx.ReadTimeout("slow")] * 4)
    observer = RecordingObserver()
    client = make_client(handler, observer=observer)
    with client, pytest.raises(RegistryUnavailable) as info:
        client.list_tags(REPO)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert observer.codes == {("registry.test", "error"): 4}


def test_follows_relative_absolute_and_opaque_links() -> None:
    handler, seen = sequence(
        tags("a", link="/v2/team/app/tags/list?last=a&n=1000"),
        tags("b", link="https://registry.test/v2/team/app/tags/list?next_page=x%2Fy%3D%3D"),
        tags("c", link="?next_page=opaque,cursor"),
        tags("d"),
    )
    with make_client(handler) as client:
        assert client.list_tags(REPO) == ["a", "b", "c", "d"]
    assert [str(r.url) for r in seen] == [
        f"{TAGS_URL}?n=1000",
        f"{TAGS_URL}?last=a&n=1000",
        f"{TAGS_URL}?next_page=x%2Fy%3D%3D",
        f"{TAGS_URL}?next_page=opaque,cursor",
    ]


def test_link_loop_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return tags("a", link="/v2/team/app/tags/list?last=a")

    with make_client(handler) as client, pytest.raises(RegistryProtocolError, match="loop"):
        client.list_tags(REPO)


def test_page_cap() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "0"))
        return tags(str(page), link=f"?page={page + 1}")

    with make_client(handler, max_pages=5) as client, pytest.raises(RegistryProtocolError):
        client.list_tags(REPO)


def test_null_tags_is_empty_and_400_on_page_size_retries_without_it() -> None:
    handler, seen = sequence(
        httpx.Response(400, json={"errors": [{"code": "PAGINATION_NUMBER_INVALID"}]}),
        httpx.Response(200, json={"name": "team/app", "tags": None}),
    )
    with make_client(handler) as client:
        assert client.list_tags(REPO) == []
    assert [str(r.url) for r in seen] == [f"{TAGS_URL}?n=1000", TAGS_URL]


def test_404_is_not_found() -> None:
    handler, _ = sequence(httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]}))
    with make_client(handler) as client, pytest.raises(RegistryNotFound):
        client.list_tags(REPO)


@pytest.mark.parametrize("declared", [True, False])
def test_oversized_body_is_refused(declared: bool) -> None:
    body = json.dumps({"name": "team/app", "tags": ["x" * 100] * 100}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body if declared else chunks())

    client = make_client(handler, max_response_bytes=4096)
    with client, pytest.raises(RegistryProtocolError, match="cap"):
        client.list_tags(REPO)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"tags": [1, 2]}', b'{"tags": "a"}'])
def test_malformed_tag_lists(body: bytes) -> None:
    handler, _ = sequence(httpx.Response(200, content=body))
    with make_client(handler) as client, pytest.raises(RegistryProtocolError):
        client.list_tags(REPO)


def test_digest_falls_back_to_hashing_and_created_is_cached() -> None:
    manifest = json.dumps(
        {"annotations": {"org.opencontainers.image.created": "2024-05-06T07:08:09.123456789Z"}}
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    handler, seen = sequence(
        httpx.Response(200),  # HEAD without Docker-Content-Digest
        httpx.Response(200, content=manifest),
        httpx.Response(200, content=manifest),
    )
    with make_client(handler) as client:
        assert client.resolve_digest(REPO, "1.0.0") == digest
        for _ in range(3):
            assert client.manifest_created(REPO, digest) == pytest.approx(1714979289.123456)
    assert [r.method for r in seen] == ["HEAD", "GET", "GET"]
    assert "application/vnd.oci.image.index.v1+json" in seen[0].headers["Accept"]


def test_manifest_not_matching_its_digest_is_refused() -> None:
    handler, _ = sequence(httpx.Response(200, content=b"{}"))
    with make_client(handler) as client, pytest.raises(RegistryProtocolError, match="match"):
        client.manifest_created(REPO, "sha256:" + "0" * 64)


def test_concurrency_per_registry_is_capped() -> None:
    lock = threading.Lock()
    active = peak = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return tags("a")

    with make_client(handler, max_concurrency_per_registry=2) as client:
        threads = [threading.Thread(target=client.list_tags, args=(REPO,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert peak == 2
