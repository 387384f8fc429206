"""``check``'s output: the JSON keys scripts read, and a table people can scan."""

from __future__ import annotations

import json

from exporter.cli.report import failing, render_json, render_table
from exporter.flux.targets import TargetId, TargetKind
from exporter.model import State
from exporter.state import TargetRow

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
        "state": "behind", "reason": "6.5.2 is not applied",
        "message": "6.5.2 is not applied", "would_request": True,
    }  # fmt: skip
    assert records[1]["reason"] == "auth"
    assert records[1]["message"] == "registry.example: HTTP 401"


def test_table_aligns_columns_and_shortens_digests() -> None:
    lines = render_table(ROWS).splitlines()
    assert lines[0].split() == [
        "KIND", "NAMESPACE", "NAME", "APPLIED", "FRESHEST", "STATE", "REQUEST", "REASON"
    ]  # fmt: skip
    assert "6.5.0@sha256:abababababab " in lines[1]
    assert DIGEST not in lines[1]
    assert lines[1].index("behind") == lines[0].index("STATE") == lines[2].index("error")
    assert lines[2].rstrip().endswith("auth: registry.example: HTTP 401")


def test_table_reasons_keep_their_words_and_shorten_their_digests() -> None:
    applied = f"1.0.0@{DIGEST}"
    row = TargetRow(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "podinfo"), url="", rule="",
        applied_revision=applied, latest_revision=applied, state=State.UP_TO_DATE,
        message=f"{applied} is applied",
    )  # fmt: skip
    long = TargetRow(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "other"), url="", rule="",
        applied_revision="", latest_revision="", state=State.ERROR, reason="",
        message="registry.example: " + "word " * 40,
    )  # fmt: skip
    lines = render_table((row, long)).splitlines()
    assert lines[1].endswith("1.0.0@sha256:abababababab is applied")
    assert lines[2].endswith("word…")
    reason = lines[2][lines[0].index("REASON") :]
    assert len(reason) <= 80


def test_table_escapes_what_a_terminal_would_act_on() -> None:
    hostile = TargetRow(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "web\x1b]0;pwned\x07"),
        url="", rule="", applied_revision="\ud800@" + DIGEST,
        latest_revision="\x1b[31mv2\x1b[0m@" + DIGEST, state=State.ERROR,
        message="tag \u202eevil\nsecond line",
    )  # fmt: skip
    table = render_table((*ROWS, hostile))
    table.encode("utf-8")  # a lone surrogate would not encode
    lines = table.splitlines()
    assert len(lines) == 4
    assert not [c for c in table if not c.isprintable() and c != "\n"]
    assert "web\\x1b]0;pwned\\x07" in lines[3] and "\\ud800@sha256:abababababab" in lines[3]
    assert "\\x1b[31mv2\\x1b[0m@" in lines[3] and "tag \\u202eevil\\nsecond line" in lines[3]
    assert lines[1].index("behind") == lines[3].index("error")  # still aligned


def test_json_is_ascii_and_round_trips() -> None:
    row = TargetRow(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "\x1b[2J"), url="", rule="",
        applied_revision="\ud800", latest_revision="", state=State.ERROR, reason="protocol",
    )  # fmt: skip
    text = render_json([row])
    assert text.isascii()
    assert json.loads(text)[0]["name"] == "\x1b[2J" and json.loads(text)[0]["applied"] == "\ud800"


def test_failing_counts_the_targets_in_the_given_states_only() -> None:
    assert failing(ROWS, {State.ERROR, State.CONFIG_ERROR}) == {State.ERROR: 1}
    assert failing(ROWS, {State.NO_MATCH}) == {}
    assert failing(ROWS, set()) == {}
