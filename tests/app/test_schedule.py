"""The schedule: what is due, earliest first, each live target once, from its latest record."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from exporter.app.schedule import Schedule
from exporter.core.plan import Tracked, next_due
from exporter.flux.annotations import Options
from exporter.flux.targets import Access, Target, TargetId, TargetKind, WatchRule
from exporter.model import RepositoryRef, TagRule

INTERVAL = 60.0  # the targets' own interval
DEFAULT, EVERY = 30.0, 5.0  # the schedule's default interval and expedite step


def target(name: str) -> Target:
    return Target(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", name),
        api_version="source.toolkit.fluxcd.io/v1",
        plural="ocirepositories",
        repository=RepositoryRef("registry.example", f"team/{name}"),
        rule=WatchRule.semver(TagRule(">=1.0.0")),
        options=Options(interval=INTERVAL),
        access=Access(),
    )


A, B, C = target("a"), target("b"), target("c")


def schedule() -> Schedule:
    return Schedule(default_interval=DEFAULT, expedite_every=EVERY)


def checked(source: Target, at: float) -> Tracked:
    """A record whose last check completed at ``at``: due again one interval later."""
    return Tracked(source, "1", checked_version="1", checked_at=at)


def test_a_new_record_is_due_at_once() -> None:
    s = schedule()
    s.update(A.id, Tracked(A, "1"))
    assert list(s.due(-math.inf)) == [A.id]
    assert list(s.due(math.inf)) == []  # once


def test_a_later_due_time_skips_the_stale_entry() -> None:
    s = schedule()
    s.update(A.id, Tracked(A, "1"))
    s.update(A.id, checked(A, 100.0))  # due at 160 now; the entry at -inf is stale
    assert list(s.due(159.0)) == []
    assert list(s.due(160.0)) == [A.id]
    assert list(s.due(math.inf)) == []


def test_an_earlier_due_time_replaces_a_later_one() -> None:
    s = schedule()
    s.update(A.id, checked(A, 100.0))
    s.update(A.id, replace(checked(A, 100.0), nudged=True))  # an event: due now
    assert list(s.due(100.0)) == [A.id]
    assert list(s.due(math.inf)) == []  # the entry at 160 went with it


def test_a_record_in_flight_is_not_due_and_is_listed_as_under_way() -> None:
    s = schedule()
    s.update(A.id, replace(Tracked(A, "1"), in_flight_since=7.0))
    assert list(s.due(math.inf)) == []
    assert s.in_flight() == [(A.id, 7.0)]
    assert s.busy()
    s.update(A.id, checked(A, 10.0))  # its check is done
    assert s.in_flight() == [] and not s.busy()
    assert list(s.due(70.0)) == [A.id]


def test_in_flight_is_a_copy() -> None:
    s = schedule()
    s.update(A.id, replace(Tracked(A, "1"), in_flight_since=7.0))
    listed = s.in_flight()
    s.update(A.id, checked(A, 10.0))
    assert listed == [(A.id, 7.0)]


def test_checks_started_before_a_moment_are_told_oldest_first_once() -> None:
    s = schedule()
    s.update(B.id, replace(Tracked(B, "1"), in_flight_since=20.0))
    s.update(A.id, replace(Tracked(A, "1"), in_flight_since=10.0))
    s.update(C.id, replace(Tracked(C, "1"), in_flight_since=30.0))
    assert s.started_before(10.0) == []  # strictly before
    assert s.started_before(25.0) == [A.id, B.id]
    s.update(A.id, replace(Tracked(A, "2"), in_flight_since=10.0))  # same check, new record
    assert s.started_before(100.0) == [C.id]  # A and B were told already
    assert len(s.in_flight()) == 3  # telling is not finishing


def test_a_finished_or_forgotten_check_is_not_told() -> None:
    s = schedule()
    s.update(A.id, replace(Tracked(A, "1"), in_flight_since=10.0))
    s.update(B.id, replace(Tracked(B, "1"), in_flight_since=10.0))
    s.update(A.id, checked(A, 12.0))
    s.forget(B.id)
    assert s.started_before(100.0) == []


def test_the_next_check_of_a_target_is_told_again() -> None:
    s = schedule()
    s.update(A.id, replace(Tracked(A, "1"), in_flight_since=10.0))
    assert s.started_before(100.0) == [A.id]
    s.update(A.id, checked(A, 50.0))
    s.update(A.id, replace(checked(A, 50.0), in_flight_since=110.0))
    assert s.started_before(100.0) == []
    assert s.started_before(200.0) == [A.id]


def test_a_check_restarted_at_the_same_instant_is_told_once() -> None:
    s = schedule()
    s.update(A.id, replace(Tracked(A, "1"), in_flight_since=10.0))
    s.update(A.id, checked(A, 10.0))  # done at once, and started again (a coarse clock)
    s.update(A.id, replace(checked(A, 10.0), in_flight_since=10.0))
    assert s.started_before(100.0) == [A.id]


def test_forget_removes_it_from_due_and_in_flight() -> None:
    s = schedule()
    s.update(A.id, Tracked(A, "1"))
    s.update(B.id, replace(Tracked(B, "1"), in_flight_since=1.0))
    s.forget(A.id)
    s.forget(B.id)
    s.forget(C.id)  # never known: nothing to do
    assert list(s.due(math.inf)) == []
    assert s.in_flight() == []


def test_a_forgotten_target_known_again_is_due_once() -> None:
    s = schedule()
    s.update(A.id, Tracked(A, "1"))
    s.forget(A.id)
    s.update(A.id, Tracked(A, "1"))  # the same due time as the forgotten entry
    assert list(s.due(0.0)) == [A.id]
    assert list(s.due(math.inf)) == []


def test_an_unscheduled_entry_is_used_up_until_the_next_update() -> None:
    s = schedule()
    s.update(A.id, checked(A, 0.0))
    s.unscheduled(A.id)
    assert list(s.due(math.inf)) == []
    s.update(A.id, checked(A, 0.0))  # the same due time: scheduled again all the same
    assert list(s.due(60.0)) == [A.id]


def test_a_popped_entry_comes_back_with_the_next_update_even_unchanged() -> None:
    s = schedule()
    s.update(A.id, checked(A, 0.0))
    assert list(s.due(60.0)) == [A.id]
    s.update(A.id, checked(A, 0.0))
    assert list(s.due(60.0)) == [A.id]


def test_idle_means_nothing_under_way_and_nothing_due() -> None:
    s = schedule()
    assert s.idle(0.0)
    s.update(A.id, checked(A, 0.0))  # due at 60
    assert s.idle(59.0)
    assert not s.idle(60.0)
    assert list(s.due(60.0)) == [A.id]
    assert s.idle(60.0)
    s.update(B.id, replace(Tracked(B, "1"), in_flight_since=60.0))
    assert not s.idle(60.0)
    s.forget(B.id)
    assert s.idle(60.0)


def test_due_targets_come_earliest_first() -> None:
    s = schedule()
    s.update(B.id, checked(B, 20.0))
    s.update(C.id, checked(C, 10.0))
    s.update(A.id, checked(A, 30.0))
    assert list(s.due(math.inf)) == [C.id, B.id, A.id]


def test_a_registry_wait_holds_a_nudged_target_back() -> None:
    s = schedule()
    s.update(A.id, replace(checked(A, 0.0), nudged=True, not_before=120.0))
    assert list(s.due(119.0)) == []
    assert list(s.due(120.0)) == [A.id]


def test_an_expedited_target_is_due_every_few_seconds() -> None:
    s = schedule()
    s.update(A.id, replace(checked(A, 0.0), expedite_until=900.0))
    assert list(s.due(EVERY - 1)) == []
    assert list(s.due(EVERY)) == [A.id]


# -- any sequence of updates, compared with a model built on ``next_due`` ------------------------

IDS = [A.id, B.id, C.id]
SOURCES = {A.id: A, B.id: B, C.id: C}
times = st.integers(min_value=-10, max_value=200).map(float)


@st.composite
def records(draw: st.DrawFn) -> Tracked:
    source = SOURCES[draw(st.sampled_from(IDS))]
    checked_at = draw(st.none() | times)
    return Tracked(
        source,
        version=draw(st.sampled_from(["1", "2"])),
        checked_version=None if checked_at is None else draw(st.sampled_from(["1", "2"])),
        checked_at=checked_at,
        not_before=draw(st.sampled_from([0.0, 50.0, 150.0])),
        in_flight_since=draw(st.none() | times),
        nudged=draw(st.booleans()),
        expedite_until=draw(st.sampled_from([0.0, 30.0, 300.0])),
    )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("update"), records()),
        st.tuples(st.just("forget"), st.sampled_from(IDS)),
        st.tuples(st.just("unscheduled"), st.sampled_from(IDS)),
        st.tuples(st.just("due"), times),
        st.tuples(st.just("started_before"), times),
    ),
    max_size=40,
)


@given(operations, times)
def test_due_yields_exactly_the_live_due_targets_once(
    ops: list[tuple[str, object]], now: float
) -> None:
    s = schedule()
    pending: dict[TargetId, float] = {}  # the model: targets scheduled and not yet yielded
    in_flight: dict[TargetId, float] = {}
    untold: dict[TargetId, float] = {}  # checks under way not yet told by ``started_before``

    def drain(at: float) -> None:
        yielded = list(s.due(at))
        expected = {t for t, due in pending.items() if due <= at}
        assert len(yielded) == len(set(yielded)), yielded
        assert set(yielded) == expected
        dues = [pending[t] for t in yielded]
        assert dues == sorted(dues)  # earliest first
        for t in yielded:
            del pending[t]

    for op, arg in ops:
        if op == "update":
            assert isinstance(arg, Tracked)
            tid = arg.source.id
            s.update(tid, arg)
            due = next_due(arg, DEFAULT, EVERY)
            if due == math.inf:
                pending.pop(tid, None)
            else:
                pending[tid] = due
            if arg.in_flight_since is None:
                in_flight.pop(tid, None)
                untold.pop(tid, None)
            elif in_flight.get(tid) != arg.in_flight_since:  # a new check
                in_flight[tid] = untold[tid] = arg.in_flight_since
        elif op == "forget":
            assert isinstance(arg, TargetId)
            s.forget(arg)
            pending.pop(arg, None)
            in_flight.pop(arg, None)
            untold.pop(arg, None)
        elif op == "unscheduled":
            assert isinstance(arg, TargetId)
            s.unscheduled(arg)
            pending.pop(arg, None)
        elif op == "started_before":
            assert isinstance(arg, float)
            told = s.started_before(arg)
            assert set(told) == {t for t, since in untold.items() if since < arg}
            sinces = [in_flight[t] for t in told]
            assert sinces == sorted(sinces)  # oldest first
            for t in told:
                untold.pop(t, None)
        else:
            assert isinstance(arg, float)
            drain(arg)
    drain(now)
    assert dict(s.in_flight()) == in_flight
    assert s.busy() == bool(in_flight)
    assert s.idle(now) == (not in_flight)  # drained: nothing left due by ``now``
