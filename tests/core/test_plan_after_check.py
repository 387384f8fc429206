"""A target's record after its check (``after_check``), and first-seen times (``remember``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.memory import MAX_FIRST_SEEN, Memory, remember
from exporter.core.observation import Fresh
from exporter.core.plan import Tracked, after_check
from exporter.flux.annotations import Options
from exporter.flux.revision import AppliedRevision
from exporter.flux.targets import Access, Target, TargetId, TargetKind, WatchRule
from exporter.model import RepositoryRef, TagRule

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
T0 = 1_800_000_000.0
CAP = 300.0
APP = Target(
    id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "app"),
    api_version="source.toolkit.fluxcd.io/v1",
    plural="ocirepositories",
    repository=RepositoryRef("registry.example", "team/app"),
    rule=WatchRule.semver(TagRule(">=1.0.0")),
    options=Options(interval=60.0),
    access=Access(),
)
OLD, NEW = Fresh("1.0.0", D1), Fresh("1.1.0", D2)


def in_flight(**changes: object) -> Tracked:
    """A record whose check started at T0 - 2 for an event received at T0 - 3."""
    t = Tracked(APP, "7", checked_version="6", checked_at=T0 - 60, in_flight_since=T0 - 2,
                overdue=True, event_at=T0 - 3, not_before=T0 - 10)  # fmt: skip
    return replace(t, **changes)  # type: ignore[arg-type]


def test_the_check_is_done_and_its_memory_kept() -> None:
    memory = Memory(first_seen=((f"1.1.0@{D2}", T0 - 1),), last_fresh=NEW)
    done = after_check(in_flight(), memory, None, T0, CAP)
    assert done.memory == memory
    assert (done.checked_version, done.checked_at) == ("7", T0)
    assert (done.in_flight_since, done.overdue) == (None, False)
    assert done.event_at is None  # the event that made it due is used up
    assert done.not_before == 0.0
    assert (done.source, done.version) == (APP, "7")


@pytest.mark.parametrize(
    ("retry_after", "not_before"),
    [(None, 0.0), (0.0, 0.0), (120.0, T0 + 120), (CAP, T0 + CAP), (86400.0, T0 + CAP)],
)
def test_the_registrys_wait_is_kept_capped(retry_after: float | None, not_before: float) -> None:
    assert after_check(in_flight(), Memory(), retry_after, T0, CAP).not_before == not_before


def test_the_expedite_window_closes_when_a_new_artifact_shows_up() -> None:
    t = in_flight(memory=Memory(last_fresh=OLD), expedite_until=T0 + 900)
    done = after_check(t, Memory(last_fresh=NEW), None, T0, CAP)
    assert done.expedite_until == 0.0


def test_the_expedite_window_stays_open_while_the_artifact_is_the_same() -> None:
    t = in_flight(memory=Memory(last_fresh=OLD), expedite_until=T0 + 900)
    assert after_check(t, Memory(last_fresh=OLD), None, T0, CAP).expedite_until == T0 + 900


def test_the_expedite_window_stays_open_without_a_known_artifact_to_compare() -> None:
    first = in_flight(expedite_until=T0 + 900)  # nothing seen before this check
    assert after_check(first, Memory(last_fresh=NEW), None, T0, CAP).expedite_until == T0 + 900
    known = in_flight(memory=Memory(last_fresh=OLD), expedite_until=T0 + 900)
    assert after_check(known, Memory(), None, T0, CAP).expedite_until == T0 + 900


def test_no_expedite_window_stays_closed() -> None:
    t = in_flight(memory=Memory(last_fresh=OLD))
    assert after_check(t, Memory(last_fresh=NEW), None, T0, CAP).expedite_until == 0.0


# -- remember: the earliest time told wins ------------------------------------------------------


def test_a_creation_time_learnt_later_moves_the_first_sight_back() -> None:
    memory = remember(APP, Memory(), f"1.1.0@{D2}", T0)
    memory = remember(APP, memory, f"1.1.0@{D2}", T0 - 600)
    assert memory.first_seen == ((f"1.1.0@{D2}", T0 - 600),)


def test_a_later_time_never_moves_the_first_sight_forward() -> None:
    memory = remember(APP, Memory(), f"1.1.0@{D2}", T0)
    assert remember(APP, memory, f"1.1.0@{D2}", T0 + 600) == memory


def test_moving_one_revision_back_leaves_the_others_and_keeps_them_in_order() -> None:
    memory = remember(APP, Memory(), f"1.1.0@{D1}", T0 - 100)
    memory = remember(APP, memory, f"1.2.0@{D2}", T0)
    memory = remember(APP, memory, f"1.2.0@{D2}", T0 - 600)
    assert memory.first_seen == ((f"1.2.0@{D2}", T0 - 600), (f"1.1.0@{D1}", T0 - 100))


def test_the_applied_revision_and_what_it_superseded_are_forgotten() -> None:
    applied = replace(APP, applied=AppliedRevision("1.1.0", D1, None, f"1.1.0@{D1}"))
    memory = remember(applied, Memory(), "1.0.5@sha256:" + "5" * 64, T0 - 200)
    memory = remember(applied, memory, f"1.1.0@{D1}", T0 - 100)
    memory = remember(applied, memory, f"1.2.0@{D2}", T0)
    assert memory.first_seen == ((f"1.2.0@{D2}", T0),)


revisions = st.sampled_from([f"1.{i}.0@sha256:{i}" + "0" * 63 for i in range(4)])
sightings = st.lists(
    st.tuples(revisions, st.integers(min_value=-1000, max_value=1000).map(lambda s: T0 + s)),
    max_size=30,
)


@given(sightings)
def test_each_revision_keeps_the_earliest_time_told(told: list[tuple[str, float]]) -> None:
    memory = Memory()
    for revision, at in told:
        memory = remember(APP, memory, revision, at)
    earliest: dict[str, float] = {}
    for revision, at in told:
        earliest[revision] = min(at, earliest.get(revision, at))
    assert dict(memory.first_seen) == earliest
    assert len(memory.first_seen) == len(earliest) <= MAX_FIRST_SEEN
    times = [at for _, at in memory.first_seen]
    assert times == sorted(times)


def test_learning_the_creation_time_or_the_count_behind_keeps_the_expedite_window() -> None:
    t = in_flight(memory=Memory(last_fresh=OLD), expedite_until=T0 + 900)
    created = Memory(last_fresh=replace(OLD, created_at=T0 - 600, versions_behind=3))
    assert after_check(t, created, None, T0, CAP).expedite_until == T0 + 900
