"""A fake at the events listener's seam: what it delivers and counts, recorded."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.core.hooks import HookSource, Nudge


class Sink:
    """The events listener's deliver and count callbacks, recorded."""

    def __init__(self) -> None:
        self.delivered: list[tuple[HookSource, list[Nudge]]] = []
        self.counted: list[tuple[str, str]] = []

    def deliver(self, source: HookSource, nudges: Sequence[Nudge], at: float) -> None:
        self.delivered.append((source, list(nudges)))

    def count(self, source: str, result: str) -> None:
        self.counted.append((source, result))
