"""A local Prometheus whose scrape targets can change while it runs.

The configuration file is the only record of the targets: adding one rewrites the file and
POSTs ``/-/reload`` (``--web.enable-lifecycle``), so any process that knows the file and the
URL can add a target, the pytest session as well as a later ``scripts/dev-env`` call.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devenv.ports import free_port, wait_for_http
from devenv.procs import Proc, spawn

SCRAPE_INTERVAL = "2s"


def prometheus_binary() -> Path | None:
    found = shutil.which("prometheus")
    return Path(found) if found else None


def write_config(path: Path, targets: Mapping[str, Sequence[str]]) -> None:
    """One static job per entry: ``{"source-controller": ["127.0.0.1:PORT"]}``."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in sorted(targets.items())
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def read_targets(path: Path) -> dict[str, list[str]]:
    config = yaml.safe_load(path.read_text()) or {}
    targets: dict[str, list[str]] = {}
    for job in config.get("scrape_configs") or []:
        hosts = [h for sc in job.get("static_configs") or [] for h in sc.get("targets") or []]
        targets[str(job["job_name"])] = [str(h) for h in hosts]
    return targets


def add_scrape_target(config: Path, url: str, job: str, target: str) -> None:
    """Add ``target`` (``host:port``) to ``job`` (created if new), then reload Prometheus."""
    targets = read_targets(config)
    hosts = targets.setdefault(job, [])
    if target not in hosts:
        hosts.append(target)
    write_config(config, targets)
    request = urllib.request.Request(f"{url}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"Prometheus reload answered HTTP {response.status}")


def start_prometheus(
    workdir: Path, logs: Path, targets: Mapping[str, Sequence[str]], timeout: float = 60.0
) -> tuple[Proc, str, Path]:
    """Returns the process, its URL and its configuration file."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError("prometheus is not installed (scripts/install-packages)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    write_config(config, targets)
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--web.enable-lifecycle",
    ]
    proc = spawn("prometheus", argv, logs / "prometheus.log")
    try:
        wait_for_http(f"{url}/-/ready", timeout=timeout, ok_codes=(200,))
    except BaseException:
        proc.stop()
        raise
    return proc, url, config
