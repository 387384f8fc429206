"""Exponential back-off, the one rule every retry here follows: a base delay, doubled with
each further consecutive failure, never above a cap.

Used for a reconcile request Flux did not apply (``exporter.core.decision``), a registry
request that failed (``exporter.registry.backoff``) and a failed or cut Kubernetes call
(``exporter.kube.informer``). Pure: the caller counts the failures and, where a fleet must
not retry in lock-step, multiplies by its own randomness.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays in seconds: ``base`` after the first failure, doubling, at most ``cap``."""

    base: float
    cap: float

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (fewer than one counts as one)."""
        return float(min(self.cap, self.base * 2.0 ** min(max(failures - 1, 0), 64)))
