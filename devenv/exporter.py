"""``flux-oci-trigger run`` as a child process on a free loopback port, for the demo, the
benchmarks and the tests: started, waited for until ready, stopped on exit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devenv.ports import free_port, wait_for_http


@contextmanager
def running_exporter(
    kubeconfig: Path, log_path: Path | None, *args: str, min_interval: str | None = None
) -> Iterator[str]:
    """Yields the base URL once ``/readyz`` answers 200. ``args`` go to ``run``;
    ``min_interval`` sets FLUX_OCI_TRIGGER_MIN_INTERVAL (the loop tick). Output goes to
    ``log_path`` (discarded when None)."""
    port = free_port()
    env = dict(os.environ)
    if min_interval is not None:
        env["FLUX_OCI_TRIGGER_MIN_INTERVAL"] = min_interval
    log = log_path.open("wb") if log_path is not None else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(kubeconfig),
         "--listen", f"127.0.0.1:{port}", *args],
        env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=60, ok_codes=(200,))
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None:
            log.close()
