"""Pagination against distribution v3 (which sorts and pages tag lists), checked against skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devenv.push import Pusher
from devenv.registry import RunningRegistry
from exporter.model import RepositoryRef
from exporter.registry.client import PAGE_SIZE, RegistryClient
from exporter.registry.errors import RegistryProtocolError

from .conftest import PLAIN_HTTP, RecordingObserver

pytestmark = [pytest.mark.registry, pytest.mark.distribution]

PATH = "bulk/app"
TAG_COUNT = 2500
TAGS = [f"1.{i // 100}.{i % 100}" for i in range(TAG_COUNT - 100)] + [
    f"build-{i:03d}" for i in range(100)
]


@pytest.fixture(scope="module")
def bulk(v3_registry: RunningRegistry) -> Iterator[RepositoryRef]:
    """One artifact's blobs pushed once, its manifest PUT under every tag."""
    with Pusher(v3_registry.base_url) as pusher:
        first = pusher.flux_artifact(PATH, TAGS[0])
        manifest = httpx.get(
            f"{v3_registry.base_url}/v2/{PATH}/manifests/{first.digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
        with ThreadPoolExecutor(max_workers=4) as pool:
            digests = set(pool.map(lambda tag: pusher.manifest(PATH, tag, manifest).digest, TAGS))
    assert digests == {first.digest}
    yield RepositoryRef.parse(f"oci://{v3_registry.host}/{PATH}")


def test_lists_every_tag_across_pages(bulk: RepositoryRef) -> None:
    observer = RecordingObserver()
    with RegistryClient(observer=observer) as client:
        client.list_tags(bulk, tls=PLAIN_HTTP)  # warm the connection, as a poll loop would
        observer.codes.clear()
        started = time.perf_counter()
        tags = client.list_tags(bulk, tls=PLAIN_HTTP)
        elapsed = time.perf_counter() - started
    assert sorted(tags) == sorted(TAGS)
    assert len(tags) == len(set(tags))
    pages = observer.codes[(bulk.registry, "200")]
    assert pages == -(-TAG_COUNT // PAGE_SIZE) > 1
    print(f"\nclient: {len(tags)} tags in {pages} requests, {elapsed * 1000:.1f} ms")


def test_skopeo_sees_the_same_tags(bulk: RepositoryRef) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo not installed")
    started = time.perf_counter()
    out = subprocess.run(
        [skopeo, "list-tags", "--tls-verify=false", f"docker://{bulk}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    skopeo_seconds = time.perf_counter() - started
    with RegistryClient() as client:
        started = time.perf_counter()
        ours = client.list_tags(bulk, tls=PLAIN_HTTP)
        cold_seconds = time.perf_counter() - started
    theirs = json.loads(out.stdout)["Tags"]
    assert ours == theirs  # same order too: v3 sorts
    print(f"\nskopeo: {skopeo_seconds * 1000:.1f} ms; client cold: {cold_seconds * 1000:.1f} ms")
    assert cold_seconds < skopeo_seconds * 2 + 0.5


def test_without_a_page_size_the_registry_chooses(bulk: RepositoryRef) -> None:
    observer = RecordingObserver()
    with RegistryClient(observer=observer, page_size=None) as client:
        tags = client.list_tags(bulk, tls=PLAIN_HTTP)
    assert sorted(tags) == sorted(TAGS)
    assert observer.codes == {(bulk.registry, "200"): 1}  # distribution: all in one answer


def test_page_cap_stops_a_long_listing(bulk: RepositoryRef) -> None:
    with RegistryClient(max_pages=2) as client, pytest.raises(RegistryProtocolError, match="pages"):
        client.list_tags(bulk, tls=PLAIN_HTTP)
