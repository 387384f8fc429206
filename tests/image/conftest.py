"""The image, built once per session by scripts/build-image (root, buildah, mmdebstrap).

A missing tool or running as non-root skips these tests, or fails them when
FOT_REQUIRE_TOOLS=1 (scripts/test).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devenv.image import Image, inspect, mounted
from tests.ops.conftest import ROOT, require_tool


@dataclass(frozen=True)
class Built:
    image: Image
    output: str  # what scripts/build-image printed
    seconds: float


@pytest.fixture(scope="session")
def built() -> Built:
    for tool in ("buildah", "mmdebstrap", "skopeo", "unshare", "chroot", "mount"):
        require_tool(tool)
    if os.geteuid() != 0:
        message = "building and running the image needs root"
        if os.environ.get("FOT_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-image")], capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stdout + out.stderr
    name = next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("image: "))
    return Built(inspect(name), out.stdout, time.monotonic() - started)


@pytest.fixture(scope="session")
def rootfs(built: Built) -> Iterator[Path]:
    """The image's filesystem (a working container's, removed at the end)."""
    with mounted(built.image.name) as path:
        yield path
