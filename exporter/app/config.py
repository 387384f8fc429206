"""What the engine is told at start: derived from the settings, plus its fixed limits."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.core.backoff import Backoff
from exporter.flux.policy import TagParsing


@dataclass(frozen=True, slots=True)
class EngineConfig:
    prefix: str
    min_interval: float
    default_interval: float
    dry_run: bool
    backoff: Backoff
    event_gap: float  # one cache refresh per repository per this many seconds, at most
    expedite_window: float  # after a tag push, look often for this long
    tag_parsing: TagParsing  # which Flux's tag rule to follow
    deadline: float = 30.0  # seconds a check may take before it is reported overdue
    retry_after_cap: float = 300.0  # the longest Retry-After honoured
    expedite_every: float = 5.0
    stall_after: float = 120.0  # liveness: no progress for this long while checks are due
