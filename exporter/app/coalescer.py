"""Push events to cache refreshes: at most one refresh of a repository per ``gap``.

A burst of events naming one repository (a registry notifies per layer, GitLab per job)
must not turn into a burst of tag listings. The first event refreshes at once; the later
ones within ``gap`` seconds are merged into one refresh at the gap's end, for every
namespace any of them named and from the earliest one's arrival, so none is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.core.hooks import Nudge, merged
from exporter.model import RepositoryRef


@dataclass(frozen=True, slots=True)
class Refresh:
    """Refresh this repository now, for the targets ``nudge`` names, as of ``received_at``."""

    repository: RepositoryRef
    nudge: Nudge
    received_at: float


@dataclass(frozen=True, slots=True)
class _Deferred:
    when: float
    nudge: Nudge
    received_at: float


class EventCoalescer:
    def __init__(self, gap: float) -> None:
        self._gap = gap
        self._last: dict[RepositoryRef, float] = {}  # repository -> its last refresh
        self._deferred: dict[RepositoryRef, _Deferred] = {}

    def offer(
        self, repositories: Iterable[RepositoryRef], nudge: Nudge, received_at: float, now: float
    ) -> tuple[list[Refresh], bool]:
        """The refreshes due now, and whether any repository's refresh was deferred."""
        ready: list[Refresh] = []
        deferred = False
        for repo in repositories:
            last = self._last.get(repo)
            if last is not None and now - last < self._gap:
                pending = self._deferred.get(repo)
                if pending is None:
                    self._deferred[repo] = _Deferred(last + self._gap, nudge, received_at)
                else:  # one refresh at the gap's end for both: every namespace, the first time
                    self._deferred[repo] = _Deferred(
                        pending.when,
                        merged(pending.nudge, nudge),
                        min(pending.received_at, received_at),
                    )
                deferred = True
                continue
            self._last[repo] = now
            pending = self._deferred.pop(repo, None)  # its gap ended: both go now, as one
            if pending is not None:
                nudge_now = merged(pending.nudge, nudge)
                ready.append(Refresh(repo, nudge_now, min(pending.received_at, received_at)))
            else:
                ready.append(Refresh(repo, nudge, received_at))
        return ready, deferred

    def due(self, now: float) -> list[Refresh]:
        """The deferred refreshes whose gap has ended."""
        ready = []
        for repo, pending in list(self._deferred.items()):
            if now >= pending.when:
                del self._deferred[repo]
                self._last[repo] = now
                ready.append(Refresh(repo, pending.nudge, pending.received_at))
        return ready
