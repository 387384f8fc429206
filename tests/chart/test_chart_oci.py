"""The chart as users get it: packaged, pushed to a registry, and read back from oci://.

`helm package` and `helm push` (plain HTTP) to the session's registry, then helm reads the
chart by its oci:// reference and version, as `helm install oci://...` does: the same
metadata, the same values, the same schema, the same objects as the chart's directory.
tests/chart/test_chart_apply.py installs it from there on the local cluster.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devenv.registry import RunningRegistry
from tests.chart.render import CHART, CHART_VERSION, LAYOUTS, Values, helm_env, push_chart
from tests.chart.render import template as template_directory

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def pushed(helm: str, registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    return push_chart(helm, registry.host, tmp_path_factory.mktemp("chart-oci"))


def _from_oci(
    helm: str, chart: str, home: Path, *args: str, values: Values | None = None
) -> subprocess.CompletedProcess[str]:
    """helm reading the chart from the registry; stdout without the notice of the pull
    ("Pulled: HOST/charts/flux-oci-trigger:VERSION", then its digest) helm prints first."""
    given = [] if values is None else ["--values", "-"]
    out = subprocess.run(
        [helm, *args, chart, "--version", CHART_VERSION, "--plain-http", *given],
        input=yaml.safe_dump(values or {}),
        capture_output=True,
        text=True,
        timeout=120,
        env=helm_env(home),
    )
    if out.returncode == 0:
        pulled, digest, out.stdout = out.stdout.split("\n", 2)
        assert pulled == f"Pulled: {chart.removeprefix('oci://')}:{CHART_VERSION}", pulled
        assert digest.startswith("Digest: sha256:"), digest
    return out


def test_the_pushed_chart_carries_its_metadata_and_values(
    helm: str, pushed: str, tmp_path: Path
) -> None:
    shown = _from_oci(helm, pushed, tmp_path, "show", "chart")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == yaml.safe_load((CHART / "Chart.yaml").read_text())
    shown = _from_oci(helm, pushed, tmp_path, "show", "values")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == (CHART / "values.yaml").read_text().strip()


@pytest.mark.parametrize("layout", ["events", "sharded"])
def test_the_pushed_chart_renders_what_the_directory_does(
    helm: str, pushed: str, tmp_path: Path, layout: str
) -> None:
    args = ("template", "flux-oci-trigger", "--namespace", "flux-oci-trigger")
    out = _from_oci(helm, pushed, tmp_path, *args, values=LAYOUTS[layout])
    assert out.returncode == 0, out.stderr
    objects = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert objects == template_directory(helm, LAYOUTS[layout])


def test_the_pushed_chart_checks_values_with_its_schema(
    helm: str, pushed: str, tmp_path: Path
) -> None:
    out = _from_oci(helm, pushed, tmp_path, "template", "x", values={"serviceMonitr": {}})
    assert out.returncode != 0 and "serviceMonitr" in out.stderr, out.stdout + out.stderr
