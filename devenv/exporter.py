"""``flux-oci-trigger run`` as a child process on a free loopback port, for the demo, the
benchmarks and the tests: started, waited for until ready, stopped on exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devenv.ports import free_port, wait_for_http
from devenv.procs import reap


@dataclass(frozen=True)
class ExporterProcess:
    url: str
    pid: int  # for /proc/<pid>/status and /proc/<pid>/stat
    started: float  # time.monotonic() just before the process was spawned


@contextmanager
def exporter_process(
    kubeconfig: Path,
    log_path: Path | None,
    *args: str,
    min_interval: str | None = None,
    env: Mapping[str, str] | None = None,
    wait_path: str = "/readyz",
    timeout: float = 60.0,
) -> Iterator[ExporterProcess]:
    """Yields once ``wait_path`` answers 200 (``/healthz`` to go on before the first full
    check). ``env`` adds to the environment; otherwise as :func:`running_exporter`."""
    port = free_port()
    environ = dict(os.environ)
    if min_interval is not None:
        environ["FLUX_OCI_TRIGGER_MIN_INTERVAL"] = min_interval
    environ.update(env or {})
    log = log_path.open("wb") if log_path is not None else None
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(kubeconfig),
         "--listen", f"127.0.0.1:{port}", *args],
        env=environ, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                wait_for_http(f"{url}{wait_path}", timeout=1.0, ok_codes=(200,))
                break
            except TimeoutError:
                if proc.poll() is not None:
                    raise RuntimeError(f"exporter exited with {proc.returncode}") from None
                if time.monotonic() - started > timeout:
                    raise
        yield ExporterProcess(url, proc.pid, started)
    finally:
        proc.terminate()
        reap(proc)
        if log is not None:
            log.close()


@contextmanager
def running_exporter(
    kubeconfig: Path, log_path: Path | None, *args: str, min_interval: str | None = None
) -> Iterator[str]:
    """Yields the base URL once ``/readyz`` answers 200. ``args`` go to ``run``;
    ``min_interval`` sets FLUX_OCI_TRIGGER_MIN_INTERVAL (the loop tick). Output goes to
    ``log_path`` (discarded when None)."""
    with exporter_process(kubeconfig, log_path, *args, min_interval=min_interval) as proc:
        yield proc.url
