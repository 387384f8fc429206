"""helm and kube-score, built by scripts/build-tools at the versions of scripts/tools.env.

A missing tool skips its tests, or fails them when FOT_REQUIRE_TOOLS=1 (scripts/test).
"""

from __future__ import annotations

import pytest

from devenv.tools import tool_dir
from tests.ops.conftest import kubectl, require_tool

__all__ = ["helm", "kube_score", "kubectl"]


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm", str(tool_dir("helm") / "helm"))


@pytest.fixture(scope="session")
def kube_score() -> str:
    return require_tool("kube-score", str(tool_dir("kube-score") / "kube-score"))
