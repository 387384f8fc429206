"""One check per repository goes first; the others on it wait for its answer.

Ten objects on one repository, all due at once, would hold ten workers on the same tag
listing. The gate lets the first check through and parks the rest; when the first is
done, the parked ones go (to the workers' quick lane: the tag cache answers them).
"""

from __future__ import annotations

from exporter.flux.targets import Target
from exporter.model import RepositoryRef


class RepositoryGate:
    def __init__(self) -> None:
        self._first: dict[RepositoryRef, Target] = {}
        self._waiting: dict[RepositoryRef, list[Target]] = {}

    def admit(self, source: Target) -> bool:
        """True: check it now, it goes first; False: it waits for the first one's answer."""
        waiting = self._waiting.get(source.repository)
        if waiting is not None:
            waiting.append(source)
            return False
        self._waiting[source.repository] = []
        self._first[source.repository] = source
        return True

    def release(self, source: Target) -> list[Target]:
        """A check of ``source`` is done: if it went first, the ones that waited for it."""
        if self._first.get(source.repository) is not source:
            return []
        del self._first[source.repository]
        return self._waiting.pop(source.repository, [])
