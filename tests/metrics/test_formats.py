"""/metrics in both formats it speaks: text 0.0.4 and OpenMetrics 1.0.0, chosen by the
scraper's Accept header, written by prometheus_client and read back by its parsers and by
a real Prometheus.

A real ``Endpoints`` on loopback serves a real ``Exposition`` and ``Metrics``; requests
are plain HTTP.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Sample

from devenv.ports import free_port, wait_for_http
from devenv.procs import reap
from exporter.flux.targets import TargetId, TargetKind
from exporter.metrics.exposition import Exposition
from exporter.metrics.instruments import Metrics
from exporter.model import ErrorReason, State
from exporter.registry.cache import CacheStats
from exporter.state import StateStore, TargetRow
from exporter.web.endpoints import Endpoints, Format, negotiate

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# what Prometheus 2.x sends
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PARSERS: dict[Format, Callable[[str], Iterable[Metric]]] = {
    Format.TEXT: text_families,
    Format.OPENMETRICS: openmetrics_families,
}


def target(i: int) -> TargetId:
    return TargetId(TargetKind.OCI_REPOSITORY, f"team-{i % 3}", f"app-{i}")


def row(i: int, **kw: Any) -> TargetRow:
    fields: dict[str, Any] = {
        "id": target(i),
        "url": f"oci://registry.example/app-{i}",
        "rule": 'semver >=1.0.0 filter ^v\\d+"x"\n',
        "applied_revision": "v1.0.0@sha256:" + "a" * 64,
        "latest_revision": "v1.1.0@sha256:" + "b" * 64,
        "state": State.BEHIND,
        "lag_seconds": 12.3456789,
        "versions_behind": 2,
        "last_check": 1_764_000_000.7,
    }
    fields.update(kw)
    return TargetRow(**fields)


@pytest.fixture
def store() -> StateStore:
    store = StateStore()
    for i in range(5):
        store.put(row(i))
    store.count_request(target(0), failed=False)
    store.count_request(target(1), failed=True)
    store.set_sources({("OCIRepository", "team-0", True): 2})
    return store


@pytest.fixture
def metrics() -> Metrics:
    metrics = Metrics()
    metrics.attach(lambda: CacheStats(requests=3, hits=2, fetches=1))
    metrics.request("registry.example", "200", 0.1)
    metrics.check_failed(ErrorReason.AUTH)
    metrics.request_to_applied.labels("OCIRepository").observe(4.0)
    return metrics


@pytest.fixture
def server(metrics: Metrics, store: StateStore) -> Iterator[Endpoints]:
    exposition = Exposition(store, 60)
    endpoints = Endpoints(
        ("127.0.0.1", 0), metrics.registry, exposition.body, lambda: (True, ""), lambda: (True, "")
    )
    endpoints.start()
    try:
        yield endpoints
    finally:
        endpoints.stop()


def get(server: Endpoints, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    host, port = server.server_address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        return {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def samples(fmt: Format, body: bytes) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in PARSERS[fmt](body.decode())
        for s in family.samples
        if isinstance(s, Sample) and s.name.startswith("flux_oci_")  # not process_*: it moves
    }


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", Format.TEXT),
        ("*/*", Format.TEXT),
        ("text/plain;version=0.0.4", Format.TEXT),
        (OPENMETRICS, Format.OPENMETRICS),
        ("application/openmetrics-text", Format.OPENMETRICS),
        (PROMETHEUS_ACCEPT, Format.OPENMETRICS),
        ("application/openmetrics-text; version=0.0.1", Format.TEXT),
        ("application/openmetrics-text; version=2.0.0", Format.TEXT),
        ("application/openmetrics-text;version=1.0.0;q=0.4,text/plain;q=0.5", Format.TEXT),
        ("text/plain, application/openmetrics-text; version=1.0.0", Format.TEXT),
        ("application/json, application/openmetrics-text;version=1.0.0;q=0", Format.TEXT),
        ("application/openmetrics-text;version=1.0.0;q=bad, */*;q=0.1", Format.TEXT),
    ],
)
def test_the_accept_header_chooses(accept: str, expected: Format) -> None:
    assert negotiate(accept) is expected


def test_openmetrics_by_negotiation_text_otherwise(server: Endpoints) -> None:
    headers, text = get(server, {})
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Accept" in headers["vary"]
    assert b"# EOF" not in text
    headers, om = get(server, {"Accept": PROMETHEUS_ACCEPT})
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.endswith(b"\n# EOF\n") and om.count(b"# EOF") == 1

    assert samples(Format.TEXT, text) == samples(Format.OPENMETRICS, om)
    ids = (("kind", "OCIRepository"), ("name", "app-0"), ("namespace", "team-0"))
    lag = ("flux_oci_target_lag_seconds", ids, 12.346)  # milliseconds
    assert lag in samples(Format.OPENMETRICS, om)
    assert ("flux_oci_reconcile_requests_total", ids, 1.0) in samples(Format.OPENMETRICS, om)

    _, zipped = get(server, {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"})
    assert gzip.decompress(zipped) == om


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_help_and_type_once_per_family_and_no_created(server: Endpoints, fmt: Format) -> None:
    accept = OPENMETRICS if fmt is Format.OPENMETRICS else "text/plain"
    _, body = get(server, {"Accept": accept})
    for kind in ("HELP", "TYPE"):
        named = re.findall(rb"^# " + kind.encode() + rb" (\S+)", body, re.MULTILINE)
        assert len(named) == len(set(named)) == len(list(PARSERS[fmt](body.decode())))
    assert b"_created" not in body
    counters = {
        Format.TEXT: b"# TYPE flux_oci_reconcile_requests_total counter\n",
        Format.OPENMETRICS: b"# TYPE flux_oci_reconcile_requests counter\n",
    }
    assert counters[fmt] in body and b"# TYPE flux_oci_check_errors" in body


def test_a_render_reuses_lines_and_equals_a_fresh_one(store: StateStore) -> None:
    exposition = Exposition(store, 60)
    exposition.render()
    store.put(row(2, last_check=1_764_000_060.0))  # only the time moves
    store.put(row(3, state=State.PENDING, lag_seconds=0.0))
    store.count_request(target(4), failed=True)  # a counter appears
    store.keep_only({target(i) for i in range(1, 5)})  # one goes away
    again = exposition.render()
    fresh = Exposition(store, 60).render()
    for fmt in Format:
        assert again.text(fmt) == fresh.text(fmt)
    # a family's lines, written alike in both formats, are one part sent in both
    text_parts, om_parts = ({id(p) for p in again.parts[fmt]} for fmt in Format)
    # app-0's request counters went away; app-4's failed request brought both of its
    # request counters (requests and errors appear together)
    assert len(text_parts & om_parts) == 7
    text = again.text(Format.TEXT)
    assert b'name="app-0"' not in text and b"1.76400006e+09" in text
    assert b'name="app-4",namespace="team-1"} 1.0' in text

    store.put(row(1, last_check=1_764_000_120.0))  # the same targets: one block is rebuilt
    third = exposition.render()
    for fmt in Format:
        assert third.text(fmt) == Exposition(store, 60).render().text(fmt)
        assert gzip.decompress(b"".join(third.zipped[fmt])) == third.text(fmt)
    rebuilt = {id(p) for p in third.parts[Format.TEXT]} - text_parts
    assert len(rebuilt) == 2  # the sources (always) and the last checks' block
    assert b"1.76400012e+09" in third.text(Format.OPENMETRICS)


# -- a real Prometheus scrapes both ------------------------------------------------------


class _AsText(BaseHTTPRequestHandler):
    """Forwards a scrape with the Accept header of a scraper that speaks only text: the
    Prometheus at hand (2.42) always asks for OpenMetrics first."""

    upstream = ""

    def do_GET(self) -> None:
        request = urllib.request.Request(
            self.upstream + self.path, headers={"Accept": "text/plain;version=0.0.4"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            body, kind = resp.read(), resp.headers["Content-Type"]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data, timeout=10) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
        return result


@pytest.mark.prometheus
def test_prometheus_scrapes_both_formats(server: Endpoints, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("FOT_REQUIRE_TOOLS") == "1":
            pytest.fail("prometheus not found on PATH")
        pytest.skip("prometheus not found on PATH")
    host, port = server.server_address
    handler = type("AsText", (_AsText,), {"upstream": f"http://{host}:{port}"})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    jobs = {"openmetrics": f"{host}:{port}", "text": f"127.0.0.1:{proxy.server_port}"}
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "honor_labels": True, "static_configs": [{"targets": [address]}]}
            for job, address in jobs.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{web}"
            wait_for_http(f"{url}/-/ready", timeout=60, ok_codes=(200,))
            deadline = time.monotonic() + 60
            while len(_query(url, "up == 1")) < 2:
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
                time.sleep(0.5)
            scraped = {
                r["metric"]["job"]: float(r["value"][1])
                for r in _query(url, "scrape_samples_scraped")
            }
            assert scraped["openmetrics"] == scraped["text"] > 50
            for expr in (
                'flux_oci_target_state{state="behind",name="app-0"}',
                'flux_oci_reconcile_requests_total{name="app-0"}',
                'flux_oci_check_errors_total{reason="auth"}',
                "flux_oci_request_to_applied_seconds_count",
            ):
                assert {r["metric"]["job"] for r in _query(url, expr)} == set(jobs), expr
            assert _query(url, '{__name__=~".+_created"}') == []
        finally:
            proc.terminate()
            reap(proc)
            proxy.shutdown()
            proxy.server_close()
