"""The event coalescer: at most one refresh of a repository per gap, and no event lost."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from exporter.app.coalescer import EventCoalescer, Refresh
from exporter.core.hooks import Nudge, merged
from exporter.model import RepositoryRef

GAP = 2.0
HOST = "registry.example"
APP = RepositoryRef(HOST, "team/app")
OTHER = RepositoryRef(HOST, "team/other")


def nudge(*namespaces: str, expedite: bool = False) -> Nudge:
    return Nudge("team/app", HOST, expedite=expedite, namespaces=frozenset(namespaces) or None)


def test_the_first_event_refreshes_at_once() -> None:
    c = EventCoalescer(GAP)
    n = nudge("apps")
    assert c.offer([APP], n, 9.5, 10.0) == ([Refresh(APP, n, 9.5)], False)
    assert c.due(100.0) == []  # nothing was deferred


def test_a_second_event_within_the_gap_is_deferred_to_the_gaps_end() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge("apps"), 10.0, 10.0)
    later = nudge("web")
    assert c.offer([APP], later, 11.0, 11.0) == ([], True)
    assert c.due(11.9) == []
    assert c.due(12.0) == [Refresh(APP, later, 11.0)]
    assert c.due(100.0) == []  # once


def test_two_deferred_events_merge_into_one_refresh() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge("apps"), 10.0, 10.0)
    second, third = nudge("web"), nudge("ops", expedite=True)
    c.offer([APP], second, 10.5, 11.0)
    c.offer([APP], third, 10.2, 11.5)  # delivered later, received earlier
    [refresh] = c.due(12.0)
    assert refresh == Refresh(APP, merged(second, third), 10.2)
    assert refresh.nudge.namespaces == frozenset({"web", "ops"})
    assert refresh.nudge.expedite


def test_a_deferred_event_for_any_namespace_stays_for_any_namespace() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge(), 10.0, 10.0)
    c.offer([APP], nudge("web"), 11.0, 11.0)
    c.offer([APP], nudge(), 11.5, 11.5)
    [refresh] = c.due(12.0)
    assert refresh.nudge.namespaces is None


def test_after_the_gap_the_next_event_refreshes_at_once() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge("apps"), 10.0, 10.0)
    n = nudge("web")
    assert c.offer([APP], n, 12.0, 12.0) == ([Refresh(APP, n, 12.0)], False)


def test_the_gap_runs_from_a_deferred_refresh_too() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge("apps"), 10.0, 10.0)
    c.offer([APP], nudge("web"), 11.0, 11.0)
    assert len(c.due(12.5)) == 1  # refreshed at 12.5
    assert c.offer([APP], nudge("ops"), 13.0, 13.0) == ([], True)
    assert c.due(14.4) == []
    assert len(c.due(14.5)) == 1


def test_one_event_for_several_repositories_is_judged_per_repository() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge("apps"), 10.0, 10.0)
    n = nudge("web")
    ready, deferred = c.offer([APP, OTHER], n, 11.0, 11.0)
    assert ready == [Refresh(OTHER, n, 11.0)]
    assert deferred
    assert c.due(12.0) == [Refresh(APP, n, 11.0)]
    assert c.offer([APP, OTHER], n, 14.0, 14.0) == (
        [Refresh(APP, n, 14.0), Refresh(OTHER, n, 14.0)],
        False,
    )


# -- any burst, with ``due`` asked before each offer (as the engine's loop does) ------------------

events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12).map(lambda quarters: quarters / 4),  # seconds apart
        st.sampled_from([APP, OTHER]),
        st.sampled_from(["apps", "web", "ops"]),
    ),
    max_size=30,
)


@given(events)
def test_refreshes_keep_the_gap_and_every_event_is_refreshed_after_it(
    burst: list[tuple[float, RepositoryRef, str]],
) -> None:
    c = EventCoalescer(GAP)
    refreshes: list[tuple[float, Refresh]] = []
    now = 0.0
    for after, repo, namespace in burst:
        now += after
        refreshes += [(now, r) for r in c.due(now)]
        ready, _ = c.offer([repo], nudge(namespace), now, now)
        refreshes += [(now, r) for r in ready]
    end = now + GAP
    refreshes += [(end, r) for r in c.due(end)]
    assert c.due(end + 100) == []
    for repo in (APP, OTHER):
        at = [t for t, r in refreshes if r.repository == repo]
        assert all(b - a >= GAP for a, b in pairwise(at)), at
    now = 0.0
    for after, repo, namespace in burst:  # each event: a refresh at or after it names it
        now += after
        assert any(
            t >= now
            and r.repository == repo
            and r.received_at <= now
            and r.nudge.namespaces is not None
            and namespace in r.nudge.namespaces
            for t, r in refreshes
        ), (now, repo, namespace)


def test_an_event_after_the_gap_but_before_the_deferred_refresh_fired_joins_it() -> None:
    c = EventCoalescer(GAP)
    c.offer([APP], nudge("apps"), 0.0, 0.0)
    c.offer([APP], nudge("web"), 1.0, 1.0)  # deferred to 2.0
    ready, deferred = c.offer([APP], nudge("ops"), 2.05, 2.05)  # before due() ran
    assert not deferred
    assert ready == [Refresh(APP, merged(nudge("web"), nudge("ops")), 1.0)]
    assert c.due(2.05) == []  # one refresh, not two
