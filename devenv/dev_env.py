"""``scripts/dev-env up|down|env|status|scrape``: the local Flux cluster for demos and tinkering.

``up`` starts everything and returns, leaving a state file under the state directory
(default ``.dev-env/`` in the repository, or ``$FOT_DEV_ENV_DIR``); the other commands read
it. ``eval "$(scripts/dev-env env)"`` points kubectl and the exporter at the cluster.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from devenv.cluster import Cluster

ROOT = Path(__file__).resolve().parents[1]


def _state_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("FOT_DEV_ENV_DIR") or ROOT / ".dev-env").resolve()


def _loaded(workdir: Path) -> Cluster:
    cluster = Cluster.load(workdir)
    if cluster is None:
        raise SystemExit(f"no cluster recorded in {workdir}: run scripts/dev-env up")
    return cluster


def up(workdir: Path) -> int:
    previous = Cluster.load(workdir)
    if previous is not None and any(previous.status().values()):
        print(f"already up ({workdir}); run scripts/dev-env down first", file=sys.stderr)
        return 1
    begin = time.monotonic()
    cluster = Cluster.start(workdir)
    took = time.monotonic() - begin
    steps = ", ".join(f"{step} {secs:.1f}s" for step, secs in cluster.timings.items())
    print(f"up in {took:.1f}s ({steps}); logs in {cluster.logs}", file=sys.stderr)
    _print_env(cluster)
    return 0


def down(workdir: Path) -> int:
    cluster = Cluster.load(workdir)
    if cluster is None:
        print(f"nothing recorded in {workdir}", file=sys.stderr)
        return 0
    cluster.stop()
    print(f"stopped {', '.join(p.name for p in cluster.procs)}", file=sys.stderr)
    return 0


def _print_env(cluster: Cluster) -> None:
    pairs = " ".join(f"{k}={shlex.quote(v)}" for k, v in cluster.env().items())
    print(f"export {pairs}")


def status(workdir: Path) -> int:
    cluster = _loaded(workdir)
    states = cluster.status()
    for proc in cluster.procs:
        print(f"{proc.name:18} pid {proc.pid:<8} {'running' if states[proc.name] else 'STOPPED'}")
    print(f"{'kube-apiserver':18} {cluster.server}")
    print(f"{'registry':18} {cluster.registry_url}")
    print(f"{'artifacts':18} http://{cluster.artifact_server}")
    print(f"{'prometheus':18} {cluster.prometheus_url}")
    return 0 if all(states.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/dev-env", description=__doc__)
    parser.add_argument("--dir", help="state directory (default .dev-env/ in the repository)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the cluster, print the environment")
    sub.add_parser("down", help="stop what up started")
    sub.add_parser("env", help="print export KUBECONFIG=... REGISTRY=... PROMETHEUS_URL=...")
    sub.add_parser("status", help="which processes run; exit 1 if one stopped")
    sub.add_parser(
        "kustomize-controller",
        help="also run Flux's kustomize-controller (for trying deploy/flux); idempotent",
    )
    scrape = sub.add_parser("scrape", help="add a Prometheus scrape target")
    scrape.add_argument("job")
    scrape.add_argument("target", help="host:port serving /metrics")
    args = parser.parse_args(argv)
    workdir = _state_dir(args.dir)
    if args.command == "up":
        return up(workdir)
    if args.command == "down":
        return down(workdir)
    if args.command == "env":
        _print_env(_loaded(workdir))
        return 0
    if args.command == "status":
        return status(workdir)
    if args.command == "kustomize-controller":
        address = _loaded(workdir).start_kustomize_controller()
        print(f"kustomize-controller running, metrics on {address}")
        return 0
    _loaded(workdir).add_scrape_target(args.job, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
