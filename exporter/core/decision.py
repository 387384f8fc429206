"""One target, one observation, one instant -> its state and whether to ask Flux to reconcile.

Pure: the clock comes in as ``now`` (Unix seconds) and what must survive between passes
comes in and goes out as an immutable :class:`Memory`. The caller keeps
``decision.memory``, or ``decision.memory_after_request`` once its patch succeeded (in
dry-run too, if it wants the same "once" behaviour); dry-run itself is the caller's
business.

Order of verdicts: ``config_error`` and ``unsupported`` (the object cannot be watched),
then ``suspended`` (Flux would not act), then ``pinned`` (nothing newer can be applied),
then what the registry said. A registry failure is ``error`` and never requests: a
listing that fails for us likely fails for Flux, and the one request per artifact would
be spent on a doomed attempt. The lag keeps growing from the last known freshest artifact
when the caller passes it.

A request is made only when ``behind``, ``tag-pattern`` allows the version and
``min-age`` has passed, and never twice for one target revision: the
``requested-revision`` annotation carries that across restarts. Once Flux has handled
the request (``status.lastHandledReconcileAt`` equals our ``requestedAt``) without
applying the revision, the target is ``stuck`` and the request is repeated with
exponential backoff from the last request (memory, or the ``requestedAt`` annotation
after a restart, when the backoff restarts at its minimum).

Lag is measured from when the oldest unapplied newer artifact appeared: its creation
time when the caller knows it (``Fresh.created_at``), otherwise when this process first
saw it. ``applied_after_request_seconds`` is reported once per request, on the pass that
finds the requested revision applied, measured to ``status.artifact.lastUpdateTime`` when
Flux set it after the request; ``applied_after_seen_seconds`` likewise from when the
applied artifact was first seen (or created). After a restart those start times are not in
memory and nothing is reported (rather than report twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from exporter.core.backoff import Backoff
from exporter.core.memory import DEFAULT_BACKOFF, Memory, Request, remember
from exporter.core.observation import (
    Fresh,
    NoMatch,
    Observation,
    RegistryFailure,
    behind_count,
    is_applied,
    revision_key,
    target_revision,
    version_text,
)
from exporter.core.timestamps import format_request_token, parse_timestamp
from exporter.flux.annotations import pattern_allows
from exporter.flux.targets import RuleKind, SourceProblem, Target
from exporter.model import ErrorReason, State

_REASON_MAX = 300


class Hold(StrEnum):
    """Why a request was not made although the target is not up to date."""

    TAG_PATTERN = "tag-pattern"
    MIN_AGE = "min-age"
    ALREADY_REQUESTED = "already-requested"
    BACKOFF = "backoff"
    REGISTRY_ERROR = "registry-error"
    FIRST_RECONCILE = "first-reconcile"  # Flux has not reconciled a new object yet: it will


@dataclass(frozen=True, slots=True)
class Decision:
    state: State
    message: str  # one line for the log, the Event and ``check``
    error_reason: ErrorReason | None = None
    target_revision: str | None = None
    lag_seconds: float = 0.0
    versions_behind: int = 0
    should_request: bool = False
    request_token: str | None = None
    why_not: Hold | None = None
    applied_after_request_seconds: float | None = None
    applied_after_seen_seconds: float | None = None  # lead time: first seen (or created) -> applied
    memory: Memory = field(default_factory=Memory)
    memory_after_request: Memory | None = None


def _bounded(text: str) -> str:
    return text if len(text) <= _REASON_MAX else text[:_REASON_MAX] + "…"


def _acknowledged(target: Target, request: Request | None) -> bool:
    """Flux handled the latest requestedAt, and that one is ours or newer than ours."""
    handled = target.last_handled_reconcile_at
    if handled is None or handled != target.requested_at:
        return False
    if request is not None and target.requested_at != request.token:
        annotated = parse_timestamp(target.requested_at)
        return annotated is not None and annotated >= request.at
    return True


def _holds(target: Target, fresh: Fresh, memory: Memory, revision: str, now: float) -> Hold | None:
    if target.applied is None and target.ready is not False:
        # No artifact yet and no failed attempt: Flux's first reconcile is under way.
        return Hold.FIRST_RECONCILE
    if not pattern_allows(target.options.tag_pattern, version_text(target, fresh)):
        return Hold.TAG_PATTERN
    appeared = memory.seen_at(revision)
    if appeared is not None and now - appeared < target.options.min_age:
        return Hold.MIN_AGE
    return None


def decide(
    source: Target | SourceProblem,
    observation: Observation | None,
    memory: Memory,
    now: float,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> Decision:
    """The verdict for one target. ``observation`` may be None only for problems,
    suspended and pinned targets (they need no registry)."""
    if isinstance(source, SourceProblem):
        state = State.CONFIG_ERROR if source.reason is ErrorReason.CONFIG else State.UNSUPPORTED
        return Decision(state, _bounded("; ".join(source.problems)), source.reason, memory=memory)
    target = source
    if target.suspended:
        return Decision(State.SUSPENDED, "spec.suspend is true", memory=memory)
    if target.rule.kind is RuleKind.PINNED:
        pin = target.rule.digest or target.rule.tag or ""
        return Decision(State.PINNED, _bounded(f"pinned to {pin}"), memory=memory)
    if observation is None:
        raise ValueError(f"{target.id}: an observation is needed for a {target.rule.kind} rule")
    memory = replace(memory, last_fresh=_last_fresh(observation, memory))
    if isinstance(observation, NoMatch):
        return Decision(State.NO_MATCH, "no tag satisfies the rule", memory=memory)
    if isinstance(observation, RegistryFailure):
        return _failure(target, observation, memory, now)
    return _fresh(target, observation, memory, now, backoff)


def _last_fresh(observation: Observation, memory: Memory) -> Fresh | None:
    if isinstance(observation, Fresh):
        return observation
    if isinstance(observation, RegistryFailure) and observation.last_known is not None:
        return observation.last_known
    return memory.last_fresh


def _failure(target: Target, failure: RegistryFailure, memory: Memory, now: float) -> Decision:
    state = {
        ErrorReason.CONFIG: State.CONFIG_ERROR,
        ErrorReason.UNSUPPORTED: State.UNSUPPORTED,
    }.get(failure.reason, State.ERROR)
    reason = _bounded(failure.message or str(failure.reason))
    last = failure.last_known
    if last is None or is_applied(target, last):
        return Decision(state, reason, failure.reason, memory=memory)
    revision = target_revision(target, last)
    memory = remember(target, memory, revision, _appeared(last, now))
    return Decision(
        state,
        reason,
        failure.reason,
        target_revision=revision,
        lag_seconds=max(0.0, now - min(t for _, t in memory.first_seen)),
        versions_behind=behind_count(target, last),
        why_not=Hold.REGISTRY_ERROR,
        memory=memory,
    )


def _since(target: Target, start: float | None, now: float) -> float | None:
    """Seconds from ``start`` to Flux applying the artifact: to ``lastUpdateTime`` when Flux
    set it after ``start``, else to ``now`` (the pass that found it applied)."""
    if start is None:
        return None
    updated = parse_timestamp(target.artifact_updated_at)
    applied_at = updated if updated is not None and updated >= start else now
    return max(0.0, applied_at - start)


def _appeared(fresh: Fresh, now: float) -> float:
    return now if fresh.created_at is None else min(fresh.created_at, now)


def _fresh(target: Target, fresh: Fresh, memory: Memory, now: float, backoff: Backoff) -> Decision:
    revision = target_revision(target, fresh)
    if is_applied(target, fresh):
        key = revision_key(target, revision)
        request = memory.request
        same = request is not None and revision_key(target, request.revision) == key
        requested = request.at if request is not None and same else None
        seen = next((t for r, t in memory.first_seen if revision_key(target, r) == key), None)
        return Decision(
            State.UP_TO_DATE,
            f"{revision} is applied",
            target_revision=revision,
            applied_after_request_seconds=_since(target, requested, now),
            applied_after_seen_seconds=_since(target, seen, now),
            memory=Memory(last_fresh=fresh),
        )

    memory = remember(target, memory, revision, _appeared(fresh, now))
    lag = max(0.0, now - min(t for _, t in memory.first_seen))
    ours = memory.request if memory.request and memory.request.revision == revision else None
    base = Decision(
        State.BEHIND,
        f"{revision} is not applied",
        target_revision=revision,
        lag_seconds=lag,
        versions_behind=behind_count(target, fresh),
        memory=memory,
    )
    hold = _holds(target, fresh, memory, revision, now)

    if ours is None and target.requested_revision != revision:
        if hold is not None:
            return replace(base, why_not=hold, message=f"{base.message}; held back by {hold}")
        return _request(base, memory, revision, now, attempts=1)

    if not _acknowledged(target, ours):
        return replace(
            base,
            state=State.PENDING,
            message=f"reconcile of {revision} requested; Flux has not handled it yet",
            why_not=Hold.ALREADY_REQUESTED,
        )
    stuck = replace(
        base,
        state=State.STUCK,
        message=_bounded(
            f"Flux handled the request for {revision} but did not apply it"
            + (f" (Ready: {target.ready_reason})" if target.ready_reason else "")
        ),
    )
    attempts = ours.attempts if ours is not None else 1
    last_at = ours.at if ours is not None else parse_timestamp(target.requested_at)
    if last_at is not None and now - last_at < backoff.delay(attempts):
        return replace(stuck, why_not=Hold.BACKOFF)
    if hold is not None:
        return replace(stuck, why_not=hold)
    return _request(stuck, memory, revision, now, attempts=attempts + 1)


def _request(base: Decision, memory: Memory, revision: str, now: float, attempts: int) -> Decision:
    token = format_request_token(now)
    after = replace(memory, request=Request(revision, now, token, attempts))
    return replace(base, should_request=True, request_token=token, memory_after_request=after)
