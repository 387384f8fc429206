"""Reconcile requests: hand a decision's patch to the actor, and take its outcome.

A request is made only by the leader and never in a dry run (both logged). While it is
under way the target's record holds the decision (``Tracked.patch``): the target is not
checked again until the outcome is in. A failed patch backs off per object (1 min
doubling to 1 h, as a stuck request) and raises one Warning Event per spell of failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from exporter.app.actor import Actor, Patch, Patched
from exporter.app.recorder import CheckObserver
from exporter.core.backoff import Backoff
from exporter.core.decision import Decision
from exporter.core.plan import Tracked
from exporter.flux.targets import Target
from exporter.kube.trigger import ObjectRef
from exporter.state import StateStore

log = logging.getLogger(__name__)


class Requests:
    def __init__(
        self,
        actor: Actor,
        *,
        store: StateStore,
        observer: CheckObserver,
        backoff: Backoff,
        clock: Callable[[], float],
        leading: Callable[[], bool],
        dry_run: bool,
    ) -> None:
        self._actor = actor
        self._store = store
        self._observer = observer
        self._backoff = backoff
        self._clock = clock
        self._leading = leading
        self._dry_run = dry_run

    def request(
        self, t: Tracked, decision: Decision, ref: ObjectRef, event_at: float | None
    ) -> Tracked:
        """Queue the patch the decision asks for, if this replica may; the record to keep."""
        source = t.source
        if not decision.should_request or not isinstance(source, Target):
            return t
        revision = decision.target_revision or ""
        applied = source.applied.raw if source.applied else "nothing"
        if self._dry_run:
            log.info("dry run: would request reconciliation of %s: %s -> %s",
                     source.id, applied, revision,
                     extra=source.id.log_fields(revision))  # fmt: skip
            return t
        if not self._leading():
            log.debug("standby: the leader requests %s -> %s", source.id, revision)
            return t
        self._actor.patch(Patch(source.id, ref, decision.request_token or "", revision, applied))
        return replace(t, patch=decision, patch_event_at=event_at)

    def outcome(self, t: Tracked | None, outcome: Patched) -> Tracked | None:
        """The patch is done (or skipped): count it; the target's record to keep, if any."""
        if not outcome.skipped and outcome.existed:  # skipped: decided again by the leader
            self._store.count_request(outcome.patch.target, failed=not outcome.ok)
        if t is None:
            return None
        if outcome.ok and t.patch_event_at is not None:
            self._observer.event_to_request(max(0.0, self._clock() - t.patch_event_at))
        decision = t.patch
        t = replace(t, patch=None, patch_event_at=None)
        if decision is not None and outcome.ok:
            return replace(t, patch_failures=0, memory=decision.memory_after_request or t.memory)
        if not outcome.skipped and outcome.existed:
            return self._failed(t, outcome)
        return t

    def _failed(self, t: Tracked, outcome: Patched) -> Tracked:
        failures = t.patch_failures + 1
        wait = self._backoff.delay(failures)
        if failures == 1:
            self._actor.event(outcome.patch.ref, "ReconcileRequestFailed",
                              f"{outcome.error}; retrying with back-off", warning=True,
                              revision=outcome.patch.revision)  # fmt: skip
        log.warning("%s: the reconcile request will be tried again in %.0fs (failure %d)",
                    t.source.id, wait, failures, extra=t.source.id.log_fields())  # fmt: skip
        return replace(t, patch_failures=failures, not_before=self._clock() + wait)
