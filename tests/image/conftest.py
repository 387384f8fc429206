"""The image, built once per session by scripts/build-image (root, buildah, mmdebstrap).

A missing tool or running as non-root skips these tests, or fails them when
FOT_REQUIRE_TOOLS=1 (scripts/test). The measured figures (size, build time) end the run's
summary.
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

FIGURES = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> dict[str, str]:
    """What the tests measured, printed at the end of the run."""
    return request.config.stash.setdefault(FIGURES, {})


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    found = config.stash.get(FIGURES, {})
    if found:
        terminalreporter.section("container image")
        for key, value in found.items():
            terminalreporter.write_line(f"{key}: {value}")


@dataclass(frozen=True)
class Built:
    image: Image
    output: str  # what scripts/build-image printed
    seconds: float


@pytest.fixture(scope="session")
def built(figures: dict[str, str]) -> Built:
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
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    name = next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("image: "))
    image = inspect(name)
    figures["image"] = f"{image.name} ({image.id[:12]})"
    figures["build"] = f"{elapsed:.1f}s ({out.stdout.splitlines()[-1]})"
    figures["size"] = f"{image.size} bytes uncompressed"
    return Built(image, out.stdout, elapsed)


@pytest.fixture(scope="session")
def rootfs(built: Built) -> Iterator[Path]:
    """The image's filesystem (a working container's, removed at the end)."""
    with mounted(built.image.name) as path:
        yield path
