"""``make demo``: the product in two minutes, on a real local Flux.

1. bring up etcd, kube-apiserver, source-controller, a registry and Prometheus;
2. push ``demo/app:v1.0.0`` and create an opted-in OCIRepository (semver ``>=1.0.0``,
   Flux interval 1h: only a reconcile request can make Flux look again soon);
3. start ``flux-oci-trigger run`` with its metrics scraped by Prometheus;
4. push ``v1.1.0`` and show the request going out and Flux applying it, with timings;
5. print the URLs to look at; Ctrl-C stops everything (``--exit`` stops at once).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from kubernetes import client, config

from devenv.cluster import Cluster
from devenv.ocirepo import create_namespace, create_opted_in, wait_for_revision
from devenv.ports import free_port, wait_for_http
from devenv.push import Pusher

ROOT = Path(__file__).resolve().parents[1]
NS, NAME, REPO = "demo", "app", "demo/app"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exit", action="store_true", help="stop everything at the end")
    args = parser.parse_args()
    say("starting a local Flux: etcd, kube-apiserver, source-controller, registry, Prometheus")
    cluster = Cluster.start(ROOT / ".dev-env" / "demo")
    exporter: subprocess.Popen[bytes] | None = None
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        create_namespace(api, NS)
        with Pusher(cluster.registry_url) as push:
            first = push.flux_artifact(REPO, "v1.0.0")
        say(f"pushed {cluster.registry}/{REPO}:v1.0.0; creating OCIRepository {NS}/{NAME}")
        create_opted_in(api, NS, NAME, f"oci://{cluster.registry}/{REPO}", ">=1.0.0")
        wait_for_revision(api, NS, NAME, f"v1.0.0@{first.digest}", 60)
        say("Flux applied v1.0.0; its next look on its own is in 1h")
        port = free_port()
        log = (cluster.logs / "flux-oci-trigger.log").open("wb")
        exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(cluster.kubeconfig),
             "--tag-ttl", "5s", "--interval", "10s", "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=60, ok_codes=(200,))
        cluster.add_scrape_target("flux-oci-trigger", f"127.0.0.1:{port}")
        say(f"flux-oci-trigger is running: http://127.0.0.1:{port}/metrics")
        with Pusher(cluster.registry_url) as push:
            pushed_at = time.monotonic()
            second = push.flux_artifact(REPO, "v1.1.0")
        say(f"pushed v1.1.0 ({second.digest[:19]}…); waiting for the exporter and Flux")
        wait_for_revision(api, NS, NAME, "v1.1.0@", 120)
        say(f"Flux applied v1.1.0 {time.monotonic() - pushed_at:.1f}s after the push")
        for line in (cluster.logs / "flux-oci-trigger.log").read_text().splitlines():
            if "requested reconciliation" in line:
                print("   exporter: " + line.split(": ", 1)[-1])
        events = client.CoreV1Api(api).list_namespaced_event(NS).items
        for e in events:
            if e.reason == "NewArtifact" and e.source and e.source.component == "flux-oci-trigger":
                print(f"   event on {NS}/{NAME}: {e.reason}: {e.message}")
        query = urllib.parse.quote('flux_oci_target_state{state="up_to_date"} == 1')
        say("look at:")
        print(f"   metrics     http://127.0.0.1:{port}/metrics")
        print(f"   Prometheus  {cluster.prometheus_url}/graph?g0.expr={query}")
        print(f"   kubectl     KUBECONFIG={cluster.kubeconfig} kubectl -n {NS} get ocirepositories")
        print(f"   check       .venv/bin/flux-oci-trigger check --kubeconfig {cluster.kubeconfig}")
        print(f"   logs        {cluster.logs}/")
        if not args.exit:
            say("Ctrl-C stops everything")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if exporter is not None:
            exporter.terminate()
            exporter.wait(timeout=15)
        api.close()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
