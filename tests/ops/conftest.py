"""Tools for the operations checks: promtool, kubectl's kustomize, a real Prometheus.

A missing tool skips its tests, or fails them when FOT_REQUIRE_TOOLS=1 (scripts/test).
The Prometheus is a child process of the session; it scrapes a loopback server that
serves a synthetic exposition of every metric of the contract, so that dashboard queries
can be checked for syntax and for returning data, and evaluates the alerting rules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import tools
from devenv.ports import free_port, wait_for_http
from devenv.procs import reap
from tests.ops.exposition import JOB, exposition

ROOT = Path(__file__).resolve().parents[2]


def require_tool(name: str, path: str | None = None) -> str:
    """``path`` (a tool scripts/build-tools builds), else ``name`` on PATH."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(name)
    if found is None:
        message = (
            f"{name} not found at {path} nor on PATH (scripts/build-tools {name})"
            if path
            else f"{name} not found on PATH"
        )
        if os.environ.get("FOT_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def kubectl() -> str:
    """scripts/build-tools builds kubectl at the API server's version; else PATH's."""
    return require_tool("kubectl", tools.binary("kubectl"))


def kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@dataclass(frozen=True)
class PrometheusAPI:
    url: str

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body

    def query(self, expr: str) -> tuple[int, dict[str, Any]]:
        """HTTP status and decoded body of an instant query (400 = bad_data)."""
        data = urllib.parse.urlencode({"query": expr}).encode()
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query", data, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


class _ExpositionHandler(BaseHTTPRequestHandler):
    scrapes = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            type(self).scrapes += 1
            n = self.scrapes
        body = exposition(n, time.time()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusAPI]:
    binary = require_tool("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _ExpositionHandler)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "alerts" / "flux-oci-trigger.rules.yaml")],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_port}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        api = PrometheusAPI(f"http://127.0.0.1:{port}")
        wait_for_http(f"{api.url}/-/ready", timeout=60, ok_codes=(200,))
        deadline = time.monotonic() + 60
        while True:  # rate() needs two samples; wait for three scrapes
            _, body = api.query(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 3')
            if body.get("data", {}).get("result"):
                break
            assert time.monotonic() < deadline, (work / "prometheus.log").read_text()
            time.sleep(0.5)
        yield api
    finally:
        proc.terminate()
        reap(proc)
        log.close()
        exporter.shutdown()
        exporter.server_close()
