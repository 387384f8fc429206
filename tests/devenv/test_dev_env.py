"""``scripts/dev-env``: up leaves a working cluster behind after the command returns, env
points at it, Prometheus scrapes the controllers and takes new targets, down stops every
process up started.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devenv import tools
from devenv.cluster import Cluster
from devenv.demo import graph_page

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]

ROOT = Path(__file__).resolve().parents[2]


def _dev_env(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "dev-env"), "--dir", str(workdir), *args],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _query(url: str, promql: str) -> list[Any]:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=5
    ) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def _wait_for_series(url: str, promql: str, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _query(url, promql)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no series for {promql} after {timeout:.0f}s")


def test_up_env_scrape_down(cluster_tools: None, tmp_path: Path) -> None:
    workdir = tmp_path / "dev-env"
    started = time.monotonic()
    up = _dev_env(workdir, "up")
    took = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    print(f"\nscripts/dev-env up: {took:.2f}s ({up.stderr.strip()})")
    cluster = Cluster.load(workdir)
    assert cluster is not None
    try:
        env = dict(pair.split("=", 1) for pair in shlex.split(up.stdout)[1:])
        assert env == cluster.env()
        assert _dev_env(workdir, "env").stdout == up.stdout
        assert _dev_env(workdir, "up").returncode == 1  # already up: refuses
        status = _dev_env(workdir, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        for _ in range(2):  # idempotent: the second call finds it running
            kustomize = _dev_env(workdir, "kustomize-controller")
            assert kustomize.returncode == 0, kustomize.stderr
        status = _dev_env(workdir, "status")
        running = [line.split()[0] for line in status.stdout.splitlines() if "running" in line]
        assert running.count("kustomize-controller") == 1, status.stdout

        namespaces = subprocess.run(
            [tools.binary("kubectl") or "kubectl", "--kubeconfig", env["KUBECONFIG"],
             "get", "namespace", "flux-system",
             "-o", "jsonpath={.status.phase}"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert namespaces.stdout == "Active"
        with urllib.request.urlopen(f"http://{env['REGISTRY']}/v2/", timeout=5) as response:
            assert response.status == 200

        prometheus = env["PROMETHEUS_URL"]
        for job in ("source-controller", "helm-controller"):
            _wait_for_series(prometheus, f'up{{job="{job}"}} == 1')
        extra = cluster.metrics["source-controller"]
        assert _dev_env(workdir, "scrape", "extra", extra).returncode == 0
        _wait_for_series(prometheus, 'up{job="extra"} == 1')
        _wait_for_series(prometheus, 'controller_runtime_active_workers{job="extra"}')

        # the demo's link answers as it is, not with a redirect to a page the build lacks
        page = graph_page(prometheus)
        with urllib.request.urlopen(f"{page}?g0.expr=up&g0.tab=1", timeout=5) as response:
            assert response.status == 200
            assert response.url.split("?")[0] == page
    finally:
        down = _dev_env(workdir, "down")
    assert down.returncode == 0, down.stderr
    assert [p.name for p in cluster.procs if p.alive()] == []  # loaded: checked through /proc
    assert _dev_env(workdir, "status").returncode == 1
