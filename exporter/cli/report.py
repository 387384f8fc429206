"""What ``check`` prints: one row per target, as a table for people or JSON for scripts.

Pure: rows in, text out. The JSON keys are a contract (scripts read them): kind,
namespace, name, applied, freshest, state, reason (the reason code, else the message),
message (what is wrong, in full: "unknown annotation … did you mean …"), would_request.
The table's REASON shows the code and the message together. Names, tags and messages
come from the cluster and the registries: the table escapes what a terminal would act on
(escape sequences, control and format characters, lone surrogates), and the JSON is ASCII
with ``\\u`` escapes, so both print safely and encode to UTF-8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any

from exporter.model import State, printable
from exporter.state import TargetRow

REASON_WIDTH = 80
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
HEADER: tuple[str, ...] = (
    "KIND", "NAMESPACE", "NAME", "APPLIED", "FRESHEST", "STATE", "REQUEST", "REASON",
)  # fmt: skip


def records(rows: Sequence[TargetRow]) -> list[dict[str, Any]]:
    return [
        {
            "kind": str(r.id.kind), "namespace": r.id.namespace, "name": r.id.name,
            "applied": r.applied_revision, "freshest": r.latest_revision,
            "state": r.state.value, "reason": r.reason or r.message, "message": r.message,
            "would_request": r.would_request,
        }
        for r in rows
    ]  # fmt: skip


def render_json(rows: Sequence[TargetRow]) -> str:
    return json.dumps(records(rows), ensure_ascii=True)


def render_table(rows: Sequence[TargetRow]) -> str:
    """Aligned columns; digests shortened to 12 hex digits, in reasons too, and reasons
    cut at a word boundary past 80 characters, with an ellipsis."""
    table: list[tuple[str, ...]] = [HEADER] + [
        tuple(printable(cell) for cell in (
            str(r["kind"]), str(r["namespace"]), str(r["name"]), _short(str(r["applied"])),
            _short(str(r["freshest"])), str(r["state"]), "yes" if r["would_request"] else "no",
            _reason(_explained(str(r["reason"]), str(r["message"])))))
        for r in records(rows)
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _explained(reason: str, message: str) -> str:
    """``config: unknown annotation …``; the message alone when it is the reason."""
    return f"{reason}: {message}" if message and reason != message else reason


def failing(rows: Sequence[TargetRow], states: Collection[State]) -> dict[State, int]:
    """How many targets are in each of ``states`` (only those present)."""
    counts = {state: sum(1 for r in rows if r.state is state) for state in State}
    return {state: n for state, n in counts.items() if n and state in states}


def _reason(text: str) -> str:
    """`v1.2.3@sha256:<64 hex> is applied` -> `v1.2.3@sha256:abcdef123456 is applied`."""
    text = _DIGEST.sub(lambda m: m.group(0)[:19], text)
    if len(text) <= REASON_WIDTH:
        return text
    cut = text.rfind(" ", REASON_WIDTH // 2, REASON_WIDTH)
    return text[: cut if cut > 0 else REASON_WIDTH - 1].rstrip() + "…"


def _short(revision: str) -> str:
    """`v1.2.3@sha256:abcdef…` -> `v1.2.3@sha256:abcdef12` for the table."""
    head, sep, digest = revision.partition("@sha256:")
    return f"{head}{sep}{digest[:12]}" if sep else revision[:40]
