"""Real registries on loopback for the registry client's integration tests.

Each registry is a child process of the test session (Debian's distribution 2.8 in three
auth modes, distribution v3 for pagination), started once per module and stopped at the end.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from devenv.registry import RunningRegistry, registry_binary, start_registry
from exporter.model import TLSOptions

USERS = {"alice": "wonder-land-7", "bob": "builder-42"}
PLAIN_HTTP = TLSOptions(insecure=True)
REFRESH_TOKEN = "refresh-0f9e8d7c6b5a"


class RecordingObserver:
    """Counts responses per (registry, code); thread-safe like the client it watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.codes: Counter[tuple[str, str]] = Counter()
        self.limited: Counter[str] = Counter()
        self.seconds = 0.0

    def request(self, registry: str, code: str, seconds: float) -> None:
        with self._lock:
            self.codes[(registry, code)] += 1
            self.seconds += seconds

    def rate_limited(self, registry: str) -> None:
        with self._lock:
            self.limited[registry] += 1

    def total(self, registry: str | None = None) -> int:
        with self._lock:
            return sum(n for (reg, _), n in self.codes.items() if registry in (None, reg))


def _require(implementation: str) -> None:
    if registry_binary(implementation) is None:  # type: ignore[arg-type]
        where = "/usr/bin/docker-registry" if implementation == "debian" else "FOT_DISTRIBUTION_BIN"
        message = f"{implementation} registry binary not found ({where}); run scripts/build-tools"
        if os.environ.get("FOT_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module", params=["none", "token", "htpasswd"])
def debian_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningRegistry]:
    _require("debian")
    workdir = tmp_path_factory.mktemp(f"debian-{request.param}")
    with start_registry(
        workdir,
        implementation="debian",
        auth=request.param,
        users=USERS,
        refresh_tokens={REFRESH_TOKEN: "alice"},
    ) as reg:
        yield reg


@pytest.fixture(scope="module")
def v3_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    _require("v3")
    with start_registry(tmp_path_factory.mktemp("v3"), implementation="v3") as reg:
        yield reg
