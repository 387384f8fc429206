"""Push events to due targets: matched by repository and namespace, coalesced per gap."""

from __future__ import annotations

from exporter.app.book import Book
from exporter.app.pushes import Pushes
from exporter.core.hooks import Nudge
from exporter.core.plan import Tracked
from exporter.model import ANONYMOUS, EventResult
from exporter.registry.cache import TagCache
from tests.app.fakes import FakeRegistry
from tests.app.test_book import APP, HOST, T0, book, checked, target

GAP = 2.0
A, B, C = target("a", ns="apps"), target("b", ns="web"), target("c", ns="ops")


def rig() -> tuple[Pushes, Book, FakeRegistry, TagCache]:
    b = book()
    for t in (A, B, C):
        b.set(t.id, Tracked(t, "1"))
        checked(b, t.id, T0)
    registry = FakeRegistry(tags={str(APP): ["1.0.0"]})
    cache = TagCache(registry, ttl=60.0, clock=lambda: T0)
    return Pushes(b, cache, gap=GAP, expedite_window=900.0), b, registry, cache


def nudged(b: Book) -> set[str]:
    return {tid.name for tid, t in b.items() if t.nudged}


def nudge(*namespaces: str) -> Nudge:
    return Nudge("team/app", HOST, namespaces=frozenset(namespaces) or None)


def test_an_event_makes_the_targets_in_its_namespaces_due_and_expires_the_listing() -> None:
    pushes, b, registry, cache = rig()
    cache.tags(APP, ANONYMOUS)
    assert pushes.nudge(nudge("apps"), T0, T0) is EventResult.ACCEPTED
    assert nudged(b) == {"a"}
    cache.tags(APP, ANONYMOUS)
    assert registry.calls == [f"list {APP}", f"list {APP}"]  # expired: asked again


def test_an_event_naming_nothing_tracked_is_ignored() -> None:
    pushes, b, _, _ = rig()
    assert pushes.nudge(Nudge("team/other", HOST), T0, T0) is EventResult.IGNORED
    assert nudged(b) == set()


def test_a_merged_refresh_reaches_every_namespace_it_names() -> None:
    pushes, b, _, _ = rig()
    pushes.nudge(nudge("apps"), T0, T0)
    assert pushes.nudge(nudge("web"), T0 + 1, T0 + 1) is EventResult.COALESCED
    assert nudged(b) == {"a"}
    # the gap is over, but the deferred refresh has not fired yet: one refresh for both
    assert pushes.nudge(nudge("ops"), T0 + 2.5, T0 + 2.5) is EventResult.ACCEPTED
    assert nudged(b) == {"a", "b", "c"}
    assert b[B.id].event_at == T0 + 1  # the earlier event's arrival


def test_a_deferred_refresh_fires_at_the_gaps_end() -> None:
    pushes, b, _, _ = rig()
    pushes.nudge(nudge("apps"), T0, T0)
    pushes.nudge(nudge("web"), T0 + 1, T0 + 1)
    pushes.due(T0 + 1.5)
    assert nudged(b) == {"a"}
    pushes.due(T0 + 2)
    assert nudged(b) == {"a", "b"}
