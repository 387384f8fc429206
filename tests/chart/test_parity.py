"""The chart and the kustomize layouts render the same objects for the same settings.

Both are shipped; neither is generated from the other. For each layout of manifests/ the
chart, given the values that describe it (render.LAYOUTS), must produce the same objects:
same apiVersion, kind, namespace and name, and equal content, once the labels of
render.CHART_LABELS (Helm's bookkeeping) are taken off. A change on one side only fails here.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

import pytest
import yaml

from tests.chart.render import CHART_LABELS, LAYOUTS, Objects, template
from tests.ops.conftest import ROOT, kustomize

Key = tuple[str, str, str, str]


def _key(o: dict[str, Any]) -> Key:
    meta = o["metadata"]
    return o["apiVersion"], o["kind"], meta.get("namespace", ""), meta["name"]


def _without_chart_labels(objects: Objects) -> dict[Key, dict[str, Any]]:
    """The objects by key, with the chart's bookkeeping labels removed; each must carry
    all of them (so the list above is exactly what the chart adds)."""
    found = {}
    for o in copy.deepcopy(objects):
        labels = o["metadata"].get("labels", {})
        missing = [k for k in CHART_LABELS if k not in labels]
        assert not missing, (_key(o), missing)
        for k in CHART_LABELS:
            del labels[k]
        found[_key(o)] = o
    return found


def differences(kustomized: Objects, charted: Objects) -> list[str]:
    """What differs, readably; empty when the two render the same objects."""
    assert not [o for o in kustomized if set(CHART_LABELS) & set(o["metadata"].get("labels", {}))]
    ours = {_key(o): o for o in kustomized}
    assert len(ours) == len(kustomized), "duplicate objects in the kustomize output"
    theirs = _without_chart_labels(charted)
    assert len(theirs) == len(charted), "duplicate objects in the chart's output"
    found = [f"only in kustomize: {k}" for k in sorted(ours.keys() - theirs.keys())]
    found += [f"only in the chart: {k}" for k in sorted(theirs.keys() - ours.keys())]
    for k in sorted(ours.keys() & theirs.keys()):
        if ours[k] != theirs[k]:
            diff = difflib.unified_diff(
                yaml.safe_dump(ours[k]).splitlines(),
                yaml.safe_dump(theirs[k]).splitlines(),
                "kustomize",
                "chart",
                lineterm="",
            )
            found.append(f"{k}:\n" + "\n".join(diff))
    return found


@pytest.mark.parametrize("layout", sorted(LAYOUTS), ids=lambda d: d.replace(".", "default"))
def test_the_chart_renders_what_the_layout_does(kubectl: str, helm: str, layout: str) -> None:
    kustomized = kustomize(kubectl, ROOT / "manifests" / layout)
    charted = template(helm, LAYOUTS[layout])
    found = differences(kustomized, charted)
    assert found == [], "\n".join(found) + "\n(a PrometheusRule difference: run scripts/sync-chart)"
    assert len(charted) >= 9


def test_a_difference_in_a_spec_is_reported(kubectl: str, helm: str) -> None:
    """The comparison looks inside the specs: one changed probe period is a difference."""
    kustomized = kustomize(kubectl, ROOT / "manifests")
    charted = template(helm, LAYOUTS["."])
    deployment = next(o for o in charted if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = 11
    (found,) = differences(kustomized, charted)
    assert found.startswith("('apps/v1', 'Deployment', 'flux-oci-trigger', 'flux-oci-trigger')")
    assert "-          periodSeconds: 10" in found and "+          periodSeconds: 11" in found


def test_other_labels_are_not_ignored(kubectl: str, helm: str) -> None:
    """Only the listed bookkeeping labels are taken off: one more label is a difference."""
    kustomized = kustomize(kubectl, ROOT / "manifests" / "base")
    charted = template(helm, {**LAYOUTS["base"], "serviceAccount": {"annotations": {"a": "b"}}})
    assert len(differences(kustomized, charted)) == 1
    monitor = {"enabled": True, "labels": {"release": "kps"}}
    extra = template(helm, {**LAYOUTS["."], "serviceMonitor": monitor})
    (found,) = differences(kustomize(kubectl, ROOT / "manifests"), extra)
    assert "ServiceMonitor" in found and "+    release: kps" in found
