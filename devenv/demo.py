"""``make demo``: the product in two minutes, on a real local Flux.

1. bring up etcd, kube-apiserver, source-controller, a registry and Prometheus;
2. push ``demo/app:v1.0.0`` and create an opted-in OCIRepository (semver ``>=1.0.0``,
   Flux interval 1h: only a reconcile request can make Flux look again soon);
3. start ``flux-oci-trigger run`` (default polling: every minute) with its events listener,
   the registry's push notifications pointed at it, and its metrics scraped by Prometheus;
4. push ``v1.1.0`` and show the notification turned into a request and Flux applying it,
   with timings (seconds, where polling alone would take up to two minutes);
5. print the URLs to look at; Ctrl-C stops everything (``--exit`` stops at once).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from kubernetes import client, config

from devenv.cluster import Cluster
from devenv.exporter import exporter_process
from devenv.ocirepo import create_namespace, create_opted_in, wait_for_revision
from devenv.ports import free_port
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
    events_port = free_port()
    secret = "Bearer " + secrets.token_hex(16)
    cluster = Cluster.start(
        ROOT / ".dev-env" / "demo",
        notify=f"http://127.0.0.1:{events_port}/hooks/distribution",
        notify_headers={"Authorization": secret},
    )
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    stack = ExitStack()
    try:
        create_namespace(api, NS)
        with Pusher(cluster.registry_url) as push:
            first = push.flux_artifact(REPO, "v1.0.0")
        say(f"pushed {cluster.registry}/{REPO}:v1.0.0; creating OCIRepository {NS}/{NAME}")
        create_opted_in(api, NS, NAME, f"oci://{cluster.registry}/{REPO}", ">=1.0.0")
        wait_for_revision(api, NS, NAME, f"v1.0.0@{first.digest}", 60)
        say("Flux applied v1.0.0; its next look on its own is in 1h")
        log = cluster.logs / "flux-oci-trigger.log"
        # the default polling (every minute, tags cached a minute): what makes this push
        # instant is the registry's notification to the events listener
        exporter = stack.enter_context(
            exporter_process(
                cluster.kubeconfig, log, "--events-listen", f"127.0.0.1:{events_port}",
                env={"FLUX_OCI_TRIGGER_DISTRIBUTION_SECRET": secret},
            )
        )  # fmt: skip
        base = exporter.url
        cluster.add_scrape_target("flux-oci-trigger", base.removeprefix("http://"))
        say(f"flux-oci-trigger is running: {base}/metrics (polling every 1m; the registry "
            f"notifies 127.0.0.1:{events_port}/hooks/distribution)")  # fmt: skip
        with Pusher(cluster.registry_url) as push:
            pushed_at = time.monotonic()
            second = push.flux_artifact(REPO, "v1.1.0")
        say(f"pushed v1.1.0 ({second.digest[:19]}…); waiting for the exporter and Flux")
        wait_for_revision(api, NS, NAME, "v1.1.0@", 120)
        say(f"Flux applied v1.1.0 {time.monotonic() - pushed_at:.1f}s after the push")
        for line in log.read_text().splitlines():
            if "requested reconciliation" in line:
                print("   exporter: " + line.split(": ", 1)[-1])
        events = client.CoreV1Api(api).list_namespaced_event(NS).items
        for e in events:
            ours = e.source is not None and e.source.component == "flux-oci-trigger"
            if ours and e.reason == "ReconcileRequested":
                print(f"   event on {NS}/{NAME}: {e.reason}: {e.message}")
        query = urllib.parse.quote('flux_oci_target_state{state="up_to_date"} == 1')
        say("look at:")
        print(f"   metrics     {base}/metrics")
        print(f"   Prometheus  {graph_page(cluster.prometheus_url)}?g0.expr={query}&g0.tab=1")
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
        stack.close()  # the exporter first, then the cluster it watches
        api.close()
        cluster.stop()
    return 0


def graph_page(prometheus: str) -> str:
    """The query page that answers: Debian's Prometheus has only the classic UI, at
    /classic/graph (its /graph redirects to a page it does not serve); builds with the
    new UI serve /graph."""
    for path in ("/classic/graph", "/graph"):
        try:
            with urllib.request.urlopen(prometheus + path, timeout=5) as reply:
                if reply.status == 200 and reply.url.rstrip("/") == prometheus + path:
                    return prometheus + path
        except OSError:
            continue
    return prometheus + "/graph"


if __name__ == "__main__":
    sys.exit(main())
