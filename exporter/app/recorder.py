"""A decision's visible traces: the state row readers see, the error counters, the
request->applied and first-seen->applied histograms, and a Warning Event when a target
turns bad.

Events are raised when a target turns to a bad state, and then once for each message
that state has not had yet, not on every failed check: an object failing every 2 s would
otherwise bury its namespace in Events, and one whose failure alternates between two
causes (a slow registry's deadline, then its page limit) would raise one every check.
The log line goes with the Event, so a failure that cannot be recorded as an Event (API
server away) still shows.
"""

from __future__ import annotations

import logging
from typing import Protocol

from exporter.app.actor import EventSink
from exporter.core.decision import Decision
from exporter.core.observation import Fresh, NoMatch, Observation
from exporter.flux.targets import RuleKind, SourceProblem, Target
from exporter.kube.trigger import ObjectRef
from exporter.model import ErrorReason, EventResult, State
from exporter.state import StateStore, TargetRow

log = logging.getLogger(__name__)
BAD = {State.ERROR, State.CONFIG_ERROR, State.UNSUPPORTED, State.STUCK, State.NO_MATCH}
MAX_REPORTED = 8  # distinct messages remembered per bad spell


class CheckObserver(Protocol):
    """Told of every failed check and every applied request (``exporter.metrics.instruments``)."""

    def check_failed(self, reason: ErrorReason) -> None: ...

    def applied(self, kind: str, after_request: float | None, after_seen: float | None) -> None: ...

    def event_received(self, source: str, result: EventResult) -> None: ...

    def event_to_request(self, seconds: float) -> None: ...


class Recorder:
    def __init__(self, store: StateStore, observer: CheckObserver, events: EventSink) -> None:
        self._store = store
        self._observer = observer
        self._events = events

    def record(
        self,
        source: Target | SourceProblem,
        ref: ObjectRef,
        decision: Decision,
        observation: Observation | None,
        fresh: Fresh | None,
        now: float,
    ) -> None:
        """Store the target's row, count its errors, and raise an Event if it turned bad."""
        previous = self._store.row(source.id)
        if decision.state in (State.ERROR, State.CONFIG_ERROR, State.UNSUPPORTED):
            self._observer.check_failed(decision.error_reason or ErrorReason.INTERNAL)
        after_request = decision.applied_after_request_seconds
        after_seen = decision.applied_after_seen_seconds
        if after_request is not None or after_seen is not None:
            self._observer.applied(str(source.id.kind), after_request, after_seen)
        reported: tuple[str, ...] = ()
        if decision.state in BAD:
            same_state = previous is not None and previous.state is decision.state
            reported = previous.reported if previous is not None and same_state else ()
            if decision.message not in reported:
                log.warning("%s is %s: %s", source.id, decision.state.value, decision.message,
                            extra=source.id.log_fields(decision.target_revision))  # fmt: skip
                revision = decision.target_revision or ""  # the freshest, when known
                self._events.event(ref, _event_reason(decision.state), decision.message,
                                   warning=True, revision=revision)  # fmt: skip
                reported = (*reported, decision.message)[-MAX_REPORTED:]
        target = source if isinstance(source, Target) else None
        ok_check = isinstance(observation, Fresh | NoMatch)
        self._store.put(
            TargetRow(
                id=source.id,
                url=f"oci://{target.repository}" if target else "",
                rule=_rule_text(target),
                applied_revision=target.applied.raw if target and target.applied else "",
                latest_revision=decision.target_revision or (fresh.tag if fresh else ""),
                state=decision.state,
                reason=(decision.error_reason.value if decision.error_reason else ""),
                message=decision.message,
                lag_seconds=decision.lag_seconds,
                versions_behind=decision.versions_behind,
                last_check=now if ok_check else None,
                would_request=decision.should_request,
                reported=reported,
            )
        )


def _event_reason(state: State) -> str:
    return {
        State.ERROR: "RegistryCheckFailed",
        State.CONFIG_ERROR: "InvalidConfiguration",
        State.UNSUPPORTED: "Unsupported",
        State.STUCK: "ReconcileStuck",
        State.NO_MATCH: "NoMatchingTag",
    }[state]


def _rule_text(target: Target | None) -> str:
    if target is None:
        return ""
    rule = target.rule
    if rule.kind is RuleKind.SEMVER and rule.tag_rule is not None:
        text = f"semver {rule.tag_rule.semver}"
        return text + (
            f" filter {rule.tag_rule.semver_filter}" if rule.tag_rule.semver_filter else ""
        )
    if rule.kind is RuleKind.TAG:
        return f"tag {rule.tag}"
    return f"pinned {rule.digest or rule.tag}"


class _NoEvents:
    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        return  # the log line that goes with every Event still tells


NO_EVENTS = _NoEvents()  # a dry run's sink: writes nothing to the cluster
