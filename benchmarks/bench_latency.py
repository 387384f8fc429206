"""Push -> applied latency on a real local Flux, driven only by flux-oci-trigger.

The OCIRepository's own interval is 1h, so nothing but the exporter's request can make
source-controller apply a new tag soon. Each round pushes a new patch version and times
until ``status.artifact.revision`` names it.

    .venv/bin/python benchmarks/bench_latency.py [--pushes 20] [--tag-ttl 5s] [--interval 5s]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from kubernetes import config

from devenv.cluster import Cluster
from devenv.exporter import running_exporter
from devenv.ocirepo import create_namespace, create_opted_in, wait_for_revision
from devenv.push import Pusher

NS, NAME, REPO = "bench", "app", "bench/app"


def rounds(cluster: Cluster, api: Any, pushes: int) -> list[float]:
    """Push 1.0.1, 1.0.2, ... and time each until Flux reports it applied."""
    latencies = []
    with Pusher(cluster.registry_url) as push:
        for i in range(1, pushes + 1):
            tag = f"1.0.{i}"
            push.flux_artifact(REPO, tag)
            latencies.append(wait_for_revision(api, NS, NAME, f"{tag}@"))
            print(f"push {i:2d}: {tag} applied after {latencies[-1]:.2f}s", flush=True)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--tag-ttl", default="5s")
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--min-interval", default="2s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(Path(tmp) / "cluster")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            create_namespace(api, NS)
            with Pusher(cluster.registry_url) as push:
                push.flux_artifact(REPO, "1.0.0")
            create_opted_in(api, NS, NAME, f"oci://{cluster.registry}/{REPO}", ">=1.0.0")
            wait_for_revision(api, NS, NAME, "1.0.0@")
            flags = ("--tag-ttl", args.tag_ttl, "--interval", args.interval)
            with running_exporter(cluster.kubeconfig, None, *flags, min_interval=args.min_interval):
                latencies = rounds(cluster, api, args.pushes)
            q = statistics.quantiles(latencies, n=20)
            print(
                f"push -> applied over {len(latencies)} pushes (tag TTL {args.tag_ttl}, "
                f"interval {args.interval}, loop tick {args.min_interval}): "
                f"p50 {statistics.median(latencies):.2f}s, p95 {q[18]:.2f}s, "
                f"max {max(latencies):.2f}s, min {min(latencies):.2f}s"
            )
        finally:
            api.close()
            cluster.stop()


if __name__ == "__main__":
    main()
