"""The book: every target's record, its schedule, the targets of each repository, the pass."""

from __future__ import annotations

import math
from dataclasses import replace

from exporter.app.book import Book
from exporter.core.decision import Decision
from exporter.core.memory import Memory
from exporter.core.observation import Fresh
from exporter.core.plan import Tracked
from exporter.flux.annotations import Options
from exporter.flux.targets import (
    Access,
    SourceProblem,
    Target,
    TargetId,
    TargetKind,
    WatchRule,
)
from exporter.model import ErrorReason, RepositoryRef, State, TagRule
from tests.app.test_sweep import Passes

HOST = "registry.example"
APP = RepositoryRef(HOST, "team/app")
OTHER = RepositoryRef(HOST, "team/other")
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
T0 = 1_800_000_000.0


def target(name: str, repository: RepositoryRef = APP, ns: str = "apps") -> Target:
    return Target(
        id=TargetId(TargetKind.OCI_REPOSITORY, ns, name),
        api_version="source.toolkit.fluxcd.io/v1",
        plural="ocirepositories",
        repository=repository,
        rule=WatchRule.semver(TagRule(">=1.0.0")),
        options=Options(interval=60.0),
        access=Access(),
    )


def problem(name: str) -> SourceProblem:
    return SourceProblem(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", name),
        api_version="source.toolkit.fluxcd.io/v1",
        plural="ocirepositories",
        reason=ErrorReason.CONFIG,
        problems=("min-age: 'soon' is not a duration",),
    )


def book(passes: Passes | None = None) -> Book:
    passes = passes or Passes()
    return Book(default_interval=60.0, expedite_every=5.0, pass_done=passes.done,
                passes=passes.count)  # fmt: skip


def checked(b: Book, tid: TargetId, at: float) -> None:
    """Mark the target's check done at ``at``: due again one interval later."""
    t = b[tid]
    b.set(tid, replace(t, checked_at=at, checked_version=t.version, nudged=False))


A, B = target("a"), target("b")


def test_take_adds_new_targets_due_at_once() -> None:
    b = book()
    b.take({A.id: (A, "1"), B.id: (B, "1")})
    assert set(b.ids()) == {A.id, B.id}
    assert b[A.id] == Tracked(A, "1")
    assert sorted(b.due(-math.inf)) == sorted([A.id, B.id])


def test_take_reschedules_a_changed_version_and_leaves_the_others() -> None:
    b = book()
    b.take({A.id: (A, "1"), B.id: (B, "1")})
    list(b.due(T0))
    checked(b, A.id, T0)
    checked(b, B.id, T0)
    changed = replace(A, options=Options(interval=120.0))
    b.take({A.id: (changed, "2"), B.id: (replace(B), "1")})  # B parsed again, same version
    assert list(b.due(T0)) == [A.id]
    assert b[A.id].source is changed and b[A.id].checked_at == T0  # the record is kept
    assert b[B.id].source is B


def test_take_forgets_the_targets_that_are_gone() -> None:
    b = book()
    b.take({A.id: (A, "1"), B.id: (B, "1")})
    b.take({A.id: (A, "1")})
    assert list(b.ids()) == [A.id]
    assert b.get(B.id) is None
    assert b.on(APP) == [A.id]
    assert list(b.due(-math.inf)) == [A.id]


def test_on_names_the_targets_of_a_repository_in_the_namespaces_asked() -> None:
    b = book()
    web, other = target("web", ns="web"), target("o", OTHER)
    b.take({A.id: (A, "1"), web.id: (web, "1"), other.id: (other, "1")})
    assert sorted(b.on(APP)) == sorted([A.id, web.id])
    assert b.on(APP, {"web"}) == [web.id]
    assert b.on(APP, set()) == []
    assert b.on(OTHER) == [other.id]
    assert b.on(RepositoryRef(HOST, "team/none")) == []
    assert b.repositories() == {A.id: APP, web.id: APP, other.id: OTHER}


def test_a_target_moving_to_another_repository_follows_it() -> None:
    b = book()
    b.take({A.id: (A, "1"), B.id: (B, "1")})
    b.take({A.id: (replace(A, repository=OTHER), "2"), B.id: (B, "1")})
    assert b.on(APP) == [B.id]
    assert b.on(OTHER) == [A.id]
    b.take({B.id: (B, "1")})
    assert b.on(OTHER) == []
    assert b.repositories() == {B.id: APP}


def test_a_problem_reads_no_repository() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    b.take({A.id: (problem("a"), "2")})
    assert b.on(APP) == []
    assert b.repositories() == {}
    assert list(b.due(-math.inf)) == [A.id]  # still judged: its Event says what is wrong


def test_nudge_makes_known_targets_due_now_and_counts_them() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    list(b.due(T0))
    checked(b, A.id, T0)
    assert b.nudge([A.id, B.id], T0 + 1, expedite_for=900.0) == 1
    assert list(b.due(T0 + 1)) == [A.id]
    assert b[A.id].nudged and b[A.id].expedite_until == T0 + 901


def test_a_push_keeps_the_first_events_arrival_and_nudges() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    list(b.due(T0))
    checked(b, A.id, T0)
    b.pushed([A.id], T0 + 1, T0 + 2, 900.0)
    b.pushed([A.id], T0 + 3, T0 + 4, 0.0)  # a second event before the check
    t = b[A.id]
    assert t.event_at == T0 + 1
    assert t.nudged and t.expedite_until == T0 + 902
    assert list(b.due(T0 + 4)) == [A.id]


def seen(b: Book, tid: TargetId, digest: str, first_seen: float) -> None:
    """The target's check at T0 found ``digest`` new, first seen at ``first_seen``."""
    memory = Memory(first_seen=((f"1.1.0@{digest}", first_seen),),
                    last_fresh=Fresh("1.1.0", digest))  # fmt: skip
    b.set(tid, replace(b[tid], memory=memory))
    checked(b, tid, T0)


def test_a_creation_time_nudges_the_targets_whose_lag_it_moves_back() -> None:
    b = book()
    c, d, e = target("c"), target("d"), target("e", OTHER)
    b.take({t.id: (t, "1") for t in (A, B, c, d, e)})
    list(b.due(T0))
    seen(b, A.id, D1, T0)  # moved back: nudged
    seen(b, B.id, D2, T0)  # another artifact
    seen(b, c.id, D1, T0 - 900)  # seen before it was created (a clock apart): stays
    checked(b, d.id, T0)  # nothing fresh known
    seen(b, e.id, D1, T0)  # another repository
    b.created(APP, D1, T0 - 600)
    assert list(b.due(T0)) == [A.id]
    assert b[A.id].nudged
    assert not any(b[t.id].nudged for t in (B, c, d, e))


def test_a_creation_time_equal_to_the_first_sight_nudges_nothing() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    list(b.due(T0))
    seen(b, A.id, D1, T0)
    b.created(APP, D1, T0)
    assert list(b.due(T0)) == []


def test_forget_drops_the_record_the_index_and_the_schedule() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    b.forget(A.id)
    b.forget(B.id)  # unknown: nothing to do
    assert b.get(A.id) is None
    assert b.on(APP) == [] and b.repositories() == {}
    assert list(b.due(math.inf)) == []


def test_a_request_under_way_keeps_the_book_busy() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    list(b.due(T0))
    checked(b, A.id, T0)
    assert not b.requesting() and b.idle(T0)
    decision = Decision(State.BEHIND, f"1.1.0@{D1} is not applied", should_request=True)
    b.set(A.id, replace(b[A.id], patch=decision))
    assert b.requesting() and not b.idle(T0)
    b.set(A.id, replace(b[A.id], patch=None))
    assert b.idle(T0)
    assert not b.idle(T0 + 60)  # due again


def test_a_check_under_way_keeps_the_book_busy() -> None:
    b = book()
    b.take({A.id: (A, "1")})
    list(b.due(T0))
    b.set(A.id, replace(b[A.id], in_flight_since=T0))
    assert b.in_flight() == [(A.id, T0)]
    assert not b.idle(T0)
    assert b.started_before(T0) == []
    assert b.started_before(T0 + 30) == [A.id]  # past a 30 s deadline: told once
    assert b.started_before(T0 + 60) == []


def test_a_pass_covers_the_targets_known_at_its_start() -> None:
    passes = Passes()
    b = book(passes)
    b.take({A.id: (A, "1"), B.id: (B, "1")})
    b.begin_pass(T0)
    b.begin_pass(T0 + 1)  # one under way: not started again
    b.checked(A.id, T0 + 2)
    assert passes.ended == []
    b.forget(B.id)  # gone before its check: no longer holds the pass open
    b.checked(A.id, T0 + 3)
    assert passes.ended == [T0 + 3]


def test_a_pass_over_no_targets_ends_at_once() -> None:
    passes = Passes()
    book(passes).begin_pass(T0)
    assert passes.ended == [T0]
