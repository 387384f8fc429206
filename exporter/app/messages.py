"""What reaches the coordinator's queue from other threads, handled in arrival order."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.app.actor import Patched
from exporter.app.check import Creation
from exporter.core.hooks import HookSource, Nudge
from exporter.core.observation import Observation
from exporter.flux.targets import Target, TargetId
from exporter.model import RepositoryRef


@dataclass(frozen=True, slots=True)
class Delivery:
    """Push events from the listener or the Kubernetes channel, as nudges."""

    source: HookSource
    nudges: tuple[Nudge, ...]
    received_at: float


@dataclass(frozen=True, slots=True)
class Lead:
    """This replica became the leader, or stopped being it."""

    leading: bool


@dataclass(frozen=True, slots=True)
class Observed:
    """A worker's check of ``source`` (the version it checked) is done; ``creation``: the
    new artifact's creation time is still to be read."""

    target: TargetId
    source: Target
    observation: Observation
    creation: Creation | None = None


@dataclass(frozen=True, slots=True)
class Created:
    """A new artifact's creation time was read (None: it has none, or it was unreadable)."""

    repository: RepositoryRef
    digest: str
    created: float | None


Message = Observed | Patched | Delivery | Lead | Created
