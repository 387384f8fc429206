"""Full passes: a pass ends when every target known at its start was checked once.

The sweep is what ``ready`` and ``flux_oci_trigger_passes_total`` count; a target that
goes away during a pass no longer holds it open. A pass ends in the store
(``pass_done``), and the next one starts at once over the targets known then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from exporter.flux.targets import TargetId

log = logging.getLogger(__name__)


class Sweep:
    def __init__(self, done: Callable[[float], None], passes: Callable[[], int]) -> None:
        self._done = done
        self._passes = passes
        self._left: set[TargetId] | None = None  # targets left in the current pass
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._left is not None

    def begin(self, targets: Collection[TargetId], now: float) -> None:
        """Start a pass over ``targets`` unless one is under way. With none, it is done at
        once (and again at the next ``begin``); a pass whose targets were all checked or
        forgotten ends here (its last one went away unchecked)."""
        if self._left:
            return
        if self._left is not None:
            self._end(now, targets)
            return
        self._left = set(targets)
        self._started = now
        if not self._left:
            self._done(now)
            self._left = None

    def forget(self, target: TargetId) -> None:
        if self._left is not None:
            self._left.discard(target)

    def checked(self, target: TargetId, now: float, targets: Collection[TargetId]) -> None:
        """``target`` was checked; when it was the pass's last, the pass ends and the next
        one starts over ``targets``."""
        if self._left is None:
            return
        self._left.discard(target)
        if not self._left:
            self._end(now, targets)

    def _end(self, now: float, targets: Collection[TargetId]) -> None:
        first = self._passes() == 0
        self._done(now)
        log.log(
            logging.INFO if first else logging.DEBUG,
            "%s full check of %d targets in %.1fs",
            "first" if first else "a", len(targets), now - self._started,
        )  # fmt: skip
        self._left = set(targets)
        self._started = now
