"""What a check's result turns into: the decision (pure), the row and its Events, the
reconcile request, and the target's next record. Never raises: a bug in one target's
decision is logged and counted (``internal``), and the target stays scheduled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from exporter.app.config import EngineConfig
from exporter.app.recorder import CheckObserver, Recorder
from exporter.app.requests import Requests
from exporter.core.decision import decide
from exporter.core.observation import Observation, RegistryFailure
from exporter.core.plan import Tracked, after_check
from exporter.flux.targets import SourceProblem, Target
from exporter.kube.discovery import Resource
from exporter.kube.trigger import ObjectRef
from exporter.model import ErrorReason

log = logging.getLogger(__name__)


class Judge:
    def __init__(
        self,
        config: EngineConfig,
        *,
        recorder: Recorder,
        requests: Requests,
        observer: CheckObserver,
        resources: Mapping[str, Resource],
    ) -> None:
        self._c = config
        self._recorder = recorder
        self._requests = requests
        self._observer = observer
        self._resources = resources

    def finish(
        self, t: Tracked, observation: Observation | None, now: float
    ) -> tuple[Tracked, bool]:
        """The record after this check (with its reconcile request under way, if one was
        made), and whether it was judged: when deciding fails the target is only marked
        checked, due again at its interval."""
        source = t.source
        try:
            decision = decide(source, observation, t.memory, now, backoff=self._c.backoff)
        except Exception:  # a bug must not stop the other targets
            log.exception("deciding on %s failed unexpectedly", source.id,
                          extra=source.id.log_fields())  # fmt: skip
            self._observer.check_failed(ErrorReason.INTERNAL)
            checked = replace(t, in_flight_since=None, overdue=False, checked_at=now,
                              checked_version=t.version)  # fmt: skip
            return checked, False
        retry_after = observation.retry_after if isinstance(observation, RegistryFailure) else None
        done = after_check(t, decision.memory, retry_after, now, self._c.retry_after_cap)
        try:
            ref = self.ref(source)
            fresh = decision.memory.last_fresh
            self._recorder.record(source, ref, decision, observation, fresh, now)
            return self._requests.request(done, decision, ref, t.event_at), True
        except Exception:
            log.exception("recording or acting on %s failed unexpectedly", source.id,
                          extra=source.id.log_fields())  # fmt: skip
            self._observer.check_failed(ErrorReason.INTERNAL)
            return done, True

    def overdue(self, t: Tracked, now: float) -> Tracked:
        """The check in flight passed its deadline: report ``unavailable`` while it goes on."""
        registry = t.source.repository.registry if isinstance(t.source, Target) else ""
        failure = RegistryFailure(
            ErrorReason.UNAVAILABLE,
            f"{registry}: no answer within {self._c.deadline:.0f}s",
            t.memory.last_fresh,
        )
        decision = decide(t.source, failure, t.memory, now, backoff=self._c.backoff)
        self._recorder.record(t.source, self.ref(t.source), decision, failure, None, now)
        return replace(t, overdue=True, memory=decision.memory)

    def ref(self, source: Target | SourceProblem) -> ObjectRef:
        return ObjectRef(
            self._resources[source.id.kind],
            source.id.namespace,
            source.id.name,
            uid=source.uid,
            resource_version=source.resource_version,
            event_annotations=source.event_annotations,
        )
