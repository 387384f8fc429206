"""A port that is already taken ends ``run`` with one clear line and exit code 2.

The real command as a child process, a real API server, and a real socket holding the
port (listening, as another exporter or anything else would).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devenv.kubeapi import ControlPlane
from devenv.ports import free_port

pytestmark = pytest.mark.cluster


@pytest.fixture
def taken() -> Iterator[str]:
    """A loopback address some other process listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield f"127.0.0.1:{holder.getsockname()[1]}"


def run(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLUX_OCI_TRIGGER_DISTRIBUTION_SECRET": "s3cret"}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(plane.kubeconfig),
         "--namespace", "port-taken", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_metrics_port_taken(control_plane: ControlPlane, taken: str) -> None:
    done = run(control_plane, "--listen", taken)
    assert done.returncode == 2, done.stderr
    assert last_line(done) == (
        f"flux-oci-trigger: metrics endpoint: cannot listen on {taken}: Address already in use"
    )


def test_events_port_taken(control_plane: ControlPlane, taken: str) -> None:
    done = run(control_plane, "--listen", f"127.0.0.1:{free_port()}", "--events-listen", taken)
    assert done.returncode == 2, done.stderr
    assert last_line(done) == (
        f"flux-oci-trigger: events listener: cannot listen on {taken}: Address already in use"
    )
