"""The chart's copies of files it ships but does not own are up to date (scripts/sync-chart)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.render import CHART
from tests.ops.conftest import ROOT

# source in the repository -> its copy in the chart
COPIES = {
    "manifests/monitoring/prometheusrule.yaml": "files/prometheusrule.yaml",
    "dashboards/flux-oci-trigger.json": "files/flux-oci-trigger.json",
}


@pytest.mark.parametrize("source", sorted(COPIES))
def test_the_chart_copy_is_the_source(source: str) -> None:
    copy = CHART / COPIES[source]
    assert copy.exists(), f"{copy.relative_to(ROOT)} is missing: run scripts/sync-chart"
    assert copy.read_bytes() == (ROOT / source).read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from {source}: run scripts/sync-chart"
    )


def test_sync_chart_copies_every_source(tmp_path: Path) -> None:
    """The script, run in a tree whose sources changed, brings every copy up to date."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "sync-chart", tmp_path / "scripts" / "sync-chart")
    for n, source in enumerate(sorted(COPIES)):
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).write_text(f"changed {n}\n")
    out = subprocess.run(
        [str(tmp_path / "scripts" / "sync-chart")], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    copies = tmp_path / CHART.relative_to(ROOT)
    for source, copy in COPIES.items():
        assert (copies / copy).read_text() == (tmp_path / source).read_text()
    assert sorted(p.name for p in (copies / "files").iterdir()) == sorted(
        Path(c).name for c in COPIES.values()
    )
