"""``check``'s output: the JSON keys scripts read, and a table people can scan."""

from __future__ import annotations

import json

from exporter.app.report import render_json, render_table
from exporter.app.state import TargetRow
from exporter.flux.targets import State, TargetId, TargetKind

DIGEST = "sha256:" + "ab" * 32
ROWS = (
    TargetRow(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "podinfo"),
        url="oci://ghcr.io/stefanprodan/podinfo", rule="semver >=6.0.0",
        applied_revision=f"6.5.0@{DIGEST}", latest_revision=f"6.5.2@{DIGEST}",
        state=State.BEHIND, message="6.5.2 is not applied", would_request=True,
    ),
    TargetRow(
        id=TargetId(TargetKind.HELM_CHART, "team-a", "web"), url="", rule="",
        applied_revision="", latest_revision="", state=State.ERROR, reason="auth",
        message="registry.example: HTTP 401",
    ),
)  # fmt: skip


def test_json_has_the_documented_keys_and_the_reason_code_first() -> None:
    records = json.loads(render_json(ROWS))
    assert records[0] == {
        "kind": "OCIRepository", "namespace": "apps", "name": "podinfo",
        "applied": f"6.5.0@{DIGEST}", "freshest": f"6.5.2@{DIGEST}",
        "state": "behind", "reason": "6.5.2 is not applied", "would_request": True,
    }  # fmt: skip
    assert records[1]["reason"] == "auth"


def test_table_aligns_columns_and_shortens_digests() -> None:
    lines = render_table(ROWS).splitlines()
    assert lines[0].split() == [
        "KIND", "NAMESPACE", "NAME", "APPLIED", "FRESHEST", "STATE", "REQUEST", "REASON"
    ]  # fmt: skip
    assert "6.5.0@sha256:abababababab " in lines[1]
    assert DIGEST not in lines[1]
    assert lines[1].index("behind") == lines[0].index("STATE") == lines[2].index("error")
    assert lines[2].rstrip().endswith("auth")
