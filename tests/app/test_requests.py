"""Reconcile requests: handed to the actor only when allowed, and their outcome taken back."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import cast

import pytest

from exporter.app.actor import Actor, Patch, Patched
from exporter.app.requests import Requests
from exporter.core.backoff import Backoff
from exporter.core.decision import Decision
from exporter.core.memory import Memory, Request
from exporter.core.plan import Tracked
from exporter.flux.annotations import Options
from exporter.flux.revision import AppliedRevision
from exporter.flux.targets import Access, Target, TargetId, TargetKind, WatchRule
from exporter.kube.trigger import ObjectRef
from exporter.model import RepositoryRef, State, TagRule
from exporter.state import StateStore
from tests.app.fakes import DIGEST, RESOURCES

T0 = 1_800_000_000.0
OLD = "1.0.0@sha256:" + "0" * 64
REVISION = f"1.1.0@{DIGEST}"
TOKEN = "2027-01-15T08:00:00.000000000Z"
BACKOFF = Backoff(60.0, 3600.0)
APP = Target(
    id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "app"),
    api_version="source.toolkit.fluxcd.io/v1",
    plural="ocirepositories",
    repository=RepositoryRef("registry.example", "team/app"),
    rule=WatchRule.semver(TagRule(">=1.0.0")),
    options=Options(interval=60.0),
    access=Access(),
    applied=AppliedRevision("1.0.0", "sha256:" + "0" * 64, None, OLD),
)
REF = ObjectRef(RESOURCES["OCIRepository"], "apps", "app")
SEEN = Memory(first_seen=((REVISION, T0 - 30),))
AFTER = replace(SEEN, request=Request(REVISION, T0, TOKEN, 1))
DECISION = Decision(
    State.BEHIND,
    f"{REVISION} is not applied",
    target_revision=REVISION,
    should_request=True,
    request_token=TOKEN,
    memory=SEEN,
    memory_after_request=AFTER,
)


class FakeActor:
    """The actor's queueing side: what was handed to it."""

    def __init__(self) -> None:
        self.patches: list[Patch] = []
        self.events: list[tuple[ObjectRef, str, str, bool]] = []
        self.revisions: list[str] = []

    def patch(self, patch: Patch) -> None:
        self.patches.append(patch)

    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        self.events.append((ref, reason, message, warning))
        self.revisions.append(revision)


class Observer:
    """A CheckObserver that keeps the event-to-request latencies."""

    def __init__(self) -> None:
        self.latencies: list[float] = []

    def check_failed(self, reason: str) -> None:
        raise AssertionError("requests report no check")

    def applied(self, kind: str, after_request: float | None, after_seen: float | None) -> None:
        raise AssertionError("requests report no applied artifact")

    def event_received(self, source: str, result: str) -> None:
        raise AssertionError("requests receive no event")

    def event_to_request(self, seconds: float) -> None:
        self.latencies.append(seconds)


class Setup:
    def __init__(self, *, dry_run: bool = False, leading: bool = True) -> None:
        self.actor = FakeActor()
        self.store = StateStore()
        self.observer = Observer()
        self.now = T0
        self.requests = Requests(cast(Actor, self.actor), store=self.store,
                                 observer=self.observer, backoff=BACKOFF,
                                 clock=lambda: self.now, leading=lambda: leading,
                                 dry_run=dry_run)  # fmt: skip


def record(**changes: object) -> Tracked:
    return replace(Tracked(APP, "1", memory=SEEN), **changes)  # type: ignore[arg-type]


def patched(*, ok: bool = True, existed: bool = True, skipped: bool = False) -> Patched:
    patch = Patch(APP.id, REF, TOKEN, REVISION, OLD)
    error = "" if ok or not existed or skipped else "patch of app failed: HTTP 500"
    return Patched(patch, ok=ok, existed=existed, skipped=skipped, error=error)


def test_a_request_hands_the_patch_to_the_actor_and_holds_the_decision() -> None:
    s = Setup()
    t = s.requests.request(record(), DECISION, REF, T0 - 5)
    assert s.actor.patches == [Patch(APP.id, REF, TOKEN, REVISION, OLD)]
    assert t.patch is DECISION and t.patch_event_at == T0 - 5
    assert s.actor.events == []  # the actor raises the ReconcileRequested Event itself


def test_a_target_with_nothing_applied_says_so_in_its_patch() -> None:
    s = Setup()
    s.requests.request(record(source=replace(APP, applied=None)), DECISION, REF, None)
    assert s.actor.patches[0].applied == "nothing"


def test_no_request_when_the_decision_asks_none() -> None:
    s = Setup()
    t = record()
    assert s.requests.request(t, replace(DECISION, should_request=False), REF, None) is t
    assert s.actor.patches == []


def test_a_dry_run_logs_the_request_and_makes_none(caplog: pytest.LogCaptureFixture) -> None:
    s = Setup(dry_run=True)
    t = record()
    with caplog.at_level(logging.INFO, logger="exporter.app.requests"):
        assert s.requests.request(t, DECISION, REF, T0) is t
    assert s.actor.patches == []
    assert caplog.messages == [
        f"dry run: would request reconciliation of {APP.id}: {OLD} -> {REVISION}"
    ]


def test_a_standby_leaves_the_request_to_the_leader() -> None:
    s = Setup(leading=False)
    t = record()
    assert s.requests.request(t, DECISION, REF, T0) is t
    assert s.actor.patches == []


def test_a_done_request_clears_the_patch_and_keeps_the_memory_after_it() -> None:
    s = Setup()
    t = s.requests.request(record(patch_failures=2), DECISION, REF, T0 - 5)
    s.now = T0 + 1.5
    done = s.requests.outcome(t, patched())
    assert done is not None
    assert (done.patch, done.patch_event_at, done.patch_failures) == (None, None, 0)
    assert done.memory == AFTER
    assert s.observer.latencies == [6.5]  # from the push event to the request sent
    assert s.store.snapshot().requests == {APP.id: 1}
    assert s.actor.events == []


def test_a_done_request_without_a_push_event_observes_no_latency() -> None:
    s = Setup()
    t = s.requests.request(record(), DECISION, REF, None)
    s.requests.outcome(t, patched())
    assert s.observer.latencies == []


def test_a_failed_request_backs_off_with_one_warning_per_spell() -> None:
    s = Setup()
    t = s.requests.request(record(), DECISION, REF, T0)
    failed = s.requests.outcome(t, patched(ok=False))
    assert failed is not None
    assert failed.patch is None and failed.patch_failures == 1
    assert failed.not_before == T0 + BACKOFF.delay(1)
    assert failed.memory == SEEN  # not requested: the decision's memory stays
    assert s.actor.events == [
        (REF, "ReconcileRequestFailed",
         "patch of app failed: HTTP 500; retrying with back-off", True),
    ]  # fmt: skip
    assert s.actor.revisions == [REVISION]  # the one the request was for
    s.now = T0 + 61
    again = s.requests.outcome(s.requests.request(failed, DECISION, REF, None), patched(ok=False))
    assert again is not None
    assert again.patch_failures == 2
    assert again.not_before == T0 + 61 + BACKOFF.delay(2)
    assert len(s.actor.events) == 1  # once per spell, not per attempt
    assert s.store.snapshot().request_errors == {APP.id: 2}
    assert s.observer.latencies == []
    ok = s.requests.outcome(s.requests.request(again, DECISION, REF, None), patched())
    assert ok is not None and ok.patch_failures == 0


def test_a_skipped_request_counts_nothing_and_backs_off_nothing() -> None:
    s = Setup()
    t = s.requests.request(record(), DECISION, REF, T0)
    after = s.requests.outcome(t, patched(ok=False, skipped=True))
    assert after is not None
    assert after.patch is None and after.patch_failures == 0 and after.not_before == 0.0
    snapshot = s.store.snapshot()
    assert snapshot.requests == {} and snapshot.request_errors == {}
    assert s.actor.events == [] and s.observer.latencies == []


def test_a_request_for_an_object_gone_counts_nothing_and_backs_off_nothing() -> None:
    s = Setup()
    t = s.requests.request(record(), DECISION, REF, T0)
    after = s.requests.outcome(t, patched(ok=False, existed=False))
    assert after is not None
    assert after.patch is None and after.patch_failures == 0 and after.not_before == 0.0
    assert s.store.snapshot().request_errors == {}
    assert s.actor.events == []


def test_an_outcome_for_a_forgotten_target_is_still_counted() -> None:
    s = Setup()
    assert s.requests.outcome(None, patched()) is None
    assert s.requests.outcome(None, patched(ok=False)) is None
    snapshot = s.store.snapshot()
    assert (snapshot.requests, snapshot.request_errors) == ({APP.id: 1}, {APP.id: 1})
    assert s.actor.events == []
