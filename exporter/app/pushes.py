"""Push events to due targets: match a nudge to the repositories the targets read,
coalesce refreshes per repository (:class:`EventCoalescer`), expire the repository's
cached listing and make its targets due at once (and often, for a GitLab tag push)."""

from __future__ import annotations

from exporter.app.book import Book
from exporter.app.coalescer import EventCoalescer, Refresh
from exporter.core.hooks import Nudge, matching
from exporter.model import EventResult
from exporter.registry.cache import TagCache


class Pushes:
    def __init__(self, book: Book, cache: TagCache, *, gap: float, expedite_window: float) -> None:
        self._book = book
        self._cache = cache
        self._coalescer = EventCoalescer(gap)
        self._expedite_window = expedite_window

    def nudge(self, nudge: Nudge, received_at: float, now: float) -> EventResult:
        matched = matching(nudge, self._book.repositories())
        if not matched:
            return EventResult.IGNORED
        ready, deferred = self._coalescer.offer(matched, nudge, received_at, now)
        for refresh in ready:
            self._refresh(refresh, now)
        return EventResult.COALESCED if deferred else EventResult.ACCEPTED

    def due(self, now: float) -> None:
        """The refreshes held back by the gap whose time has come."""
        for refresh in self._coalescer.due(now):
            self._refresh(refresh, now)

    def _refresh(self, refresh: Refresh, now: float) -> None:
        targets = self._book.on(refresh.repository, refresh.nudge.namespaces)
        if not targets:
            return
        self._cache.expire(refresh.repository)
        window = self._expedite_window if refresh.nudge.expedite else 0.0
        self._book.pushed(targets, refresh.received_at, now, window)
