"""The session's shared fixtures, and the cost markers that go with them.

Test folders mirror the packages; what a test costs is its markers (pyproject.toml). A test
that uses a control plane must be marked ``cluster``, one that uses the Flux cluster also
``controllers``, so that ``-m "not cluster"`` never starts either: collection stops
otherwise.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.flux_cluster"]

# a fixture (or anything that uses it) -> the markers of the tests that use it
MARKERS = {
    "control_plane": ("cluster",),
    "plane": ("cluster",),
    "flux_cluster": ("cluster", "controllers"),
    "cluster_tools": ("cluster", "controllers"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = []
    for item in items:
        used = [f for f in getattr(item, "fixturenames", ()) if f in MARKERS]
        needed = {m for f in used for m in MARKERS[f]}
        absent = sorted(m for m in needed if item.get_closest_marker(m) is None)
        if absent:
            unmarked.append(f"{item.nodeid} ({', '.join(used)}): not marked {', '.join(absent)}")
    if unmarked:
        raise pytest.UsageError("tests without their cost marker:\n" + "\n".join(unmarked))
