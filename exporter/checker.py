"""One pass: Flux objects -> targets -> registry -> decision -> request -> state.

A failure in one object never stops the others: every target ends the pass with a row
in the state store (its state, reason, lag), a log line when something is wrong, an
Event when its state turns bad, and a count in ``flux_oci_check_errors_total``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.access import AccessError, AccessRefs, AccessResolver
from exporter.decision import Decision, decide
from exporter.discovery import Resource
from exporter.helm_sources import helm_chart_source, helm_chart_target, helm_repository_info
from exporter.memory import Backoff, Memory
from exporter.metrics import Metrics
from exporter.observation import Fresh, Observation, RegistryFailure
from exporter.observe import observe
from exporter.recorder import Recorder
from exporter.sources import is_oci_source, oci_repository_target
from exporter.state import StateStore
from exporter.tagcache import TagCache
from exporter.targets import ErrorReason, RuleKind, SourceProblem, Target, TargetId
from exporter.trigger import ObjectRef, PatchError, Trigger

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass(frozen=True)
class CheckerConfig:
    prefix: str
    min_interval: float
    default_interval: float
    dry_run: bool
    backoff: Backoff


class Checker:
    def __init__(
        self,
        config: CheckerConfig,
        *,
        resources: Mapping[str, Resource],
        cache: TagCache,
        access: AccessResolver,
        trigger: Trigger,
        store: StateStore,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._c = config
        self._resources = resources
        self._cache = cache
        self._access = access
        self._trigger = trigger
        self._store = store
        self._metrics = metrics
        self._recorder = Recorder(store, metrics, trigger)
        self._clock = clock
        self._memory: dict[TargetId, Memory] = {}
        self._last_fresh: dict[TargetId, Fresh] = {}
        self._checked_at: dict[TargetId, float] = {}
        self._versions: dict[TargetId, str] = {}  # resourceVersion at the last check

    # -- the pass ---------------------------------------------------------------------------

    def run_pass(self, objects: Mapping[str, Sequence[Obj]], *, force: bool = False) -> int:
        """Check every target that is due (all of them with ``force``); return how many."""
        self._count_sources(objects)
        sources = list(self._targets(objects))
        alive = {s.id for s in sources}
        versions = _resource_versions(objects)
        checked = 0
        for source in sources:
            now = self._clock()
            interval = self._interval(source)
            key = (str(source.id.kind), source.id.namespace, source.id.name)
            changed = versions.get(key) != self._versions.get(source.id)
            due = now - self._checked_at.get(source.id, -1e18) >= interval
            if not (force or changed or due):
                continue
            self._versions[source.id] = versions.get(key, "")
            try:
                self._check(source, now)
            except Exception:  # a bug must not stop the other targets
                log.exception("checking %s failed unexpectedly", source.id)
                self._metrics.check_errors.labels("protocol").inc()
            self._checked_at[source.id] = now
            checked += 1
        self._store.keep_only(alive)
        for table in (self._memory, self._last_fresh, self._checked_at, self._versions):
            for gone in [t for t in table if t not in alive]:
                del table[gone]
        self._store.pass_done(self._clock())
        return checked

    def _interval(self, source: Target | SourceProblem) -> float:
        if isinstance(source, Target):
            return source.options.interval
        return self._c.default_interval

    def _count_sources(self, objects: Mapping[str, Sequence[Obj]]) -> None:
        counts: Counter[tuple[str, str, bool]] = Counter()
        key = self._c.prefix + "enabled"
        for kind in ("OCIRepository", "HelmRepository"):
            for obj in objects.get(kind, ()):
                if is_oci_source(obj):
                    meta = obj.get("metadata") or {}
                    opted = (meta.get("annotations") or {}).get(key) == "true"
                    counts[(kind, str(meta.get("namespace", "")), opted)] += 1
        self._store.set_sources(counts)

    def _targets(self, objects: Mapping[str, Sequence[Obj]]) -> list[Target | SourceProblem]:
        found: list[Target | SourceProblem] = []
        kw = {"min_interval": self._c.min_interval, "default_interval": self._c.default_interval}
        for obj in objects.get("OCIRepository", ()):
            target = oci_repository_target(obj, self._c.prefix, **kw)
            if target is not None:
                found.append(target)
        repos = {}
        for obj in objects.get("HelmRepository", ()):
            info = helm_repository_info(obj, self._c.prefix, **kw)
            if info is not None and info.claimed:
                repos[(info.namespace, info.name)] = info
        for chart in objects.get("HelmChart", ()):
            ref = helm_chart_source(chart)
            info = repos.get(ref) if ref else None
            if info is not None:
                target = helm_chart_target(chart, info, self._c.prefix)
                if target is not None:
                    found.append(target)
        return found

    # -- one target -------------------------------------------------------------------------

    def _check(self, source: Target | SourceProblem, now: float) -> None:
        memory = self._memory.get(source.id, Memory())
        observation: Observation | None = None
        if (
            isinstance(source, Target)
            and not source.suspended
            and source.rule.kind is not RuleKind.PINNED
        ):
            try:
                access = self._access.resolve(self._refs(source), source.repository)
            except AccessError as exc:
                observation = RegistryFailure(
                    ErrorReason.CONFIG, str(exc), self._last_fresh.get(source.id)
                )
            else:
                observation = observe(source, access, self._cache, self._last_fresh.get(source.id))
            if isinstance(observation, Fresh):
                self._last_fresh[source.id] = observation
            elif isinstance(observation, RegistryFailure) and observation.last_known:
                self._last_fresh[source.id] = observation.last_known
        decision = decide(source, observation, memory, now, backoff=self._c.backoff)
        memory = self._act(source, decision)
        self._memory[source.id] = memory
        self._recorder.record(source, self._ref(source), decision, observation,
                              self._last_fresh.get(source.id), now)  # fmt: skip

    def _refs(self, target: Target) -> AccessRefs:
        a = target.access
        return AccessRefs(
            namespace=target.id.namespace,
            secret_name=a.secret,
            service_account=a.service_account,
            cert_secret_name=a.cert_secret,
            insecure=a.insecure,
            basic_auth_keys=target.id.kind == "HelmChart",
        )

    def _ref(self, source: Target | SourceProblem) -> ObjectRef:
        return ObjectRef(self._resources[source.id.kind], source.id.namespace, source.id.name)

    def _act(self, source: Target | SourceProblem, decision: Decision) -> Memory:
        if not decision.should_request or not isinstance(source, Target):
            return decision.memory
        revision = decision.target_revision or ""
        applied = source.applied.raw if source.applied else "nothing"
        if self._c.dry_run:
            log.info("dry run: would request reconciliation of %s: %s -> %s",
                     source.id, applied, revision)  # fmt: skip
            return decision.memory
        token = decision.request_token or ""
        try:
            existed = self._trigger.request(self._ref(source), token, revision)
        except PatchError as exc:
            self._store.count_request(source.id, failed=True)
            log.warning("reconcile request for %s failed: %s", source.id, exc)
            return decision.memory
        if not existed:
            return decision.memory
        self._store.count_request(source.id, failed=False)
        log.info("requested reconciliation of %s: %s -> %s", source.id, applied, revision)
        self._trigger.event(
            self._ref(source), "NewArtifact",
            f"new artifact {revision} (applied: {applied}); reconciliation requested",
        )  # fmt: skip
        return decision.memory_after_request or decision.memory


def _resource_versions(objects: Mapping[str, Sequence[Obj]]) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) -> resourceVersion: a changed object is checked at once."""
    found: dict[tuple[str, str, str], str] = {}
    for kind, objs in objects.items():
        for obj in objs:
            meta = obj.get("metadata") or {}
            key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
            found[key] = str(meta.get("resourceVersion", ""))
    return found
