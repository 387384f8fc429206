"""Registry efficiency on a local distribution v3 registry, in one run.

1. Listing a 10,000-tag repository: `flux-oci-trigger tags` vs `skopeo list-tags`
   (whole processes, wall time, median of several runs) and the requests each needs.
2. 1,000 objects over 200 repositories through the tag cache: registry requests per TTL
   (must equal the number of repositories) and the wall time of one full refresh under the
   client's per-registry concurrency limit.

    .venv/bin/python benchmarks/bench_registry.py [--tags 10000] [--objects 1000] [--repos 200]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from devenv.push import Pusher
from devenv.registry import start_registry
from exporter.model import RepositoryRef, TLSOptions
from exporter.registry.cache import TagCache
from exporter.registry.client import RegistryClient

PLAIN = TLSOptions(insecure=True)


class Counting:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[str] = Counter()

    def request(self, registry: str, code: str, seconds: float) -> None:
        with self.lock:
            self.codes[code] += 1

    def rate_limited(self, registry: str) -> None:
        pass


def seed(base_url: str, path: str, tags: list[str]) -> None:
    with Pusher(base_url) as pusher:
        first = pusher.flux_artifact(path, tags[0])
        manifest = httpx.get(
            f"{base_url}/v2/{path}/manifests/{first.digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda tag: pusher.manifest(path, tag, manifest), tags[1:]))


def timed(cmd: list[str], runs: int) -> tuple[float, str]:
    times = []
    out = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - started)
        out = done.stdout
    return statistics.median(times), out


def bench_listing(host: str, base_url: str, count: int, runs: int) -> None:
    path = "bench/big"
    seed(base_url, path, [f"1.{i // 1000}.{i % 1000}" for i in range(count)])
    ours_s, ours_out = timed(
        [sys.executable, "-m", "exporter", "tags", f"oci://{host}/{path}", "--insecure"], runs
    )
    observer = Counting()
    with RegistryClient(observer=observer) as client:
        started = time.perf_counter()
        listed = client.list_tags(RepositoryRef(host, path), tls=PLAIN)
        in_process = time.perf_counter() - started
    ours_requests = sum(observer.codes.values())
    whole = Counting()
    with RegistryClient(observer=whole, page_size=None) as client:
        started = time.perf_counter()
        client.list_tags(RepositoryRef(host, path), tls=PLAIN)
        unpaged = time.perf_counter() - started
    assert len(ours_out.splitlines()) == count == len(listed)
    print(f"listing {count} tags:")
    print(
        f"  flux-oci-trigger tags : {ours_s * 1000:7.1f} ms per process "
        f"({ours_requests} requests; {in_process * 1000:.1f} ms of it listing)"
    )
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        print("  skopeo not installed: no reference figure")
        return
    sk_s, sk_out = timed(
        [skopeo, "list-tags", "--tls-verify=false", f"docker://{host}/{path}"], runs
    )
    assert sk_out.count('"1.') == count
    print(f"  skopeo list-tags      : {sk_s * 1000:7.1f} ms per process (1 request: no n=)")
    print(
        f"  our client without n= : {unpaged * 1000:7.1f} ms listing "
        f"({sum(whole.codes.values())} request; the default n=1000 saves 10x round trips on "
        "registries that page by 100 when n is absent, e.g. GitLab.com and GHCR)"
    )
    print(f"  ratio ours/skopeo     : {ours_s / sk_s:.2f}")


def bench_cache(host: str, base_url: str, objects: int, repos: int) -> None:
    paths = [f"team-{i % 20}/app-{i}" for i in range(repos)]
    with Pusher(base_url) as pusher, ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: pusher.flux_artifact(p, "1.0.0"), paths))
    observer = Counting()
    now = [0.0]
    with RegistryClient(observer=observer) as client:
        cache = TagCache(client, ttl=60, clock=lambda: now[0])
        targets = [RepositoryRef(host, paths[i % repos]) for i in range(objects)]
        for ttl_round in range(2):
            observer.codes.clear()
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=16) as pool:
                listings = list(pool.map(lambda r: cache.tags(r, tls=PLAIN), targets))
            elapsed = time.perf_counter() - started
            assert all(listing.tags == ("1.0.0",) for listing in listings)
            requests = sum(observer.codes.values())
            print(
                f"cache, TTL period {ttl_round + 1}: {objects} objects on {repos} repositories "
                f"-> {requests} registry requests (target {repos}), full refresh "
                f"{elapsed * 1000:.0f} ms with 16 workers, 4 connections per registry"
            )
            again = sum(observer.codes.values())
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(lambda r: cache.tags(r, tls=PLAIN), targets))
            print(f"  second pass inside the TTL: {sum(observer.codes.values()) - again} requests")
            now[0] += 61


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_registry(Path(tmp), implementation="v3") as reg,
    ):
        bench_listing(reg.host, reg.base_url, args.tags, args.runs)
        bench_cache(reg.host, reg.base_url, args.objects, args.repos)


if __name__ == "__main__":
    main()
