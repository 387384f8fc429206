"""A tenant's hostile registry against the exporter's memory: RSS over a soak.

A real API server (etcd + kube-apiserver) holds one opted-in OCIRepository per hostile
answer, all on one loopback ``FaultRegistry`` that never gives a usable listing:

- ``endless-body``: a tag list that never ends (capped at 8 MiB, the default);
- ``endless-pages``: pages of 64 KiB, each linking to the next (the 8 MiB listing cap);
- ``page-limit``: pages of 2 KiB, each linking to the next (the 1,000-page limit);
- ``declared``: a Content-Length of 2 GB;
- ``gzip-bomb``: 64 MiB of tag list, gzipped to about 64 KiB.

``flux-oci-trigger run`` checks every object every 10 s (``--interval 10s --tag-ttl
10s``); its RSS is read from ``/proc`` every 10 s. A failed listing that kept what it
read would add about its cap per check (the leak this guards against grew by about
8 MB per check); flat means within a few MB after the first minute.

    .venv/bin/python -m benchmarks.bench_hostile_memory [--minutes 10]   (from the checkout:
    it borrows the tests' fault registry)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from devenv.exporter import exporter_process
from devenv.kubeapi import start_control_plane
from devenv.ocirepo import GROUP, PLURAL, VERSION, create_namespace
from tests.fixtures.faultregistry import FaultRegistry, hostile_answers

NS = "hostile"
HOSTILE = tuple(hostile_answers(NS))  # one repository, and one object, per answer


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FaultRegistry() as registry:
        for name in HOSTILE:
            registry.route(f"/v2/{NS}/{name}/tags/list", hostile_answers(f"{NS}/{name}")[name])
        plane = start_control_plane(Path(tmp) / "plane")
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            create_namespace(api, NS)
            for name in HOSTILE:
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, NS, PLURAL,
                    {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OCIRepository",
                     "metadata": {"name": name, "namespace": NS,
                                  "annotations": {"oci-trigger.gitlab.com/enabled": "true"}},
                     "spec": {"url": f"oci://{registry.host}/{NS}/{name}", "interval": "1h",
                              "ref": {"semver": ">=1.0.0"}, "insecure": True}},
                )  # fmt: skip
            run = ("--namespace", NS, "--interval", "10s", "--tag-ttl", "10s")
            with exporter_process(plane.kubeconfig, Path(tmp) / "exporter.log", *run,
                                  min_interval="10s", timeout=120) as proc:  # fmt: skip
                samples: list[tuple[float, float]] = []
                start = time.monotonic()
                while (elapsed := time.monotonic() - start) < args.minutes * 60:
                    samples.append((elapsed, rss_mb(proc.pid)))
                    registry.forget()  # the fixture's record of requests, not the exporter's
                    time.sleep(10)
                samples.append((time.monotonic() - start, rss_mb(proc.pid)))
                listings = sum(1 for s in registry.requests() if s.path.endswith("/tags/list"))
        finally:
            api.close()
            plane.stop()
    print(f"\n{len(HOSTILE)} hostile repositories, checks every 10 s, {args.minutes:g} min")
    for elapsed, rss in samples[:: max(1, len(samples) // 12)]:
        print(f"  t={elapsed:6.0f}s  RSS {rss:7.1f} MB")
    after_warmup = [rss for elapsed, rss in samples if elapsed >= 60] or [samples[-1][1]]
    print(f"RSS after the first minute: min {min(after_warmup):.1f} MB, "
          f"max {max(after_warmup):.1f} MB, spread {max(after_warmup) - min(after_warmup):.1f} MB; "
          f"end {samples[-1][1]:.1f} MB")  # fmt: skip
    print(f"(listing requests in the last 10 s window: {listings})")


if __name__ == "__main__":
    main()
