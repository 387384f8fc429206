"""Every dashboard expression, evaluated by the real Prometheus scraping the real exporter
while it drives the real source-controller."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from dashboards.build import SAMPLE_VARIABLES, concrete, expressions
from devenv.cluster import Cluster
from devenv.ocirepo import create_opted_in
from devenv.push import Pusher

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
# the dashboard's "All" for cluster (no cluster label here) and instance, a short rate window
VARIABLES = {**SAMPLE_VARIABLES, "$__rate_interval": "1m"}
# Panels an operator opens first: they must show data, not only parse.
# (The "behind" panels are rightly empty here: Flux applies our request within seconds.)
CORE = ("flux_oci_sources", "flux_oci_target_state", "flux_oci_tag_cache_requests_total",
        "flux_oci_registry_requests_total", "flux_oci_reconcile_requests_total")  # fmt: skip


def query(prometheus: str, expr: str) -> dict[str, Any]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def test_every_dashboard_query_runs_and_core_panels_have_data(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher, exporter: str
) -> None:
    repo = f"{namespace}/app"
    pusher.flux_artifact(repo, "v1.0.0")
    create_opted_in(kube, namespace, "app", f"oci://{flux_cluster.registry}/{repo}", ">=1.0.0")
    flux_cluster.add_scrape_target("flux-oci-trigger", exporter.removeprefix("http://"))
    time.sleep(3)
    pusher.flux_artifact(repo, "v1.1.0")
    prometheus = flux_cluster.prometheus_url
    requests = f'flux_oci_reconcile_requests_total{{namespace="{namespace}"}} >= 1'
    deadline = time.monotonic() + 90
    while not query(prometheus, requests)["data"]["result"]:
        assert time.monotonic() < deadline, "Prometheus never saw the exporter's request"
        time.sleep(1)
    time.sleep(6)  # a few more scrapes, so that rate() over 1m has two points everywhere
    empty = []
    for expr in expressions():
        answer = query(prometheus, concrete(expr, VARIABLES))
        assert answer["status"] == "success", (expr, answer)
        if not answer["data"]["result"]:
            empty.append(expr)
    for name in CORE:
        using = [e for e in expressions() if name in e]
        assert using, f"no dashboard panel uses {name}"
        assert any(e not in empty for e in using), f"every panel on {name} is empty: {using}"
