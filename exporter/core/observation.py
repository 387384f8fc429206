"""What the registry said about a target, and how it compares with what Flux applied.

An observation is the artifact Flux would apply now (:class:`Fresh`), no tag matching
the rule (:class:`NoMatch`) or a failure (:class:`RegistryFailure`). Comparing it with
``status.artifact.revision`` goes through the formats Flux writes (``tag@digest`` for
OCIRepository, the chart version, with ``+generation`` when values files are merged, for
HelmChart), so that "applied" means what Flux means by it. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.flux.revision import chart_version_key, format_oci_revision
from exporter.flux.targets import RuleKind, Target, TargetKind
from exporter.model import ErrorReason


@dataclass(frozen=True, slots=True)
class Fresh:
    """The artifact Flux would apply now: the tag it picks (``chart_version`` is the
    version Flux reads from it, HelmChart only) and the tag's manifest digest.
    ``versions_behind`` counts candidates newer than the applied one."""

    tag: str
    digest: str | None = None
    chart_version: str | None = None
    versions_behind: int = 0
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class NoMatch:
    """No tag satisfies the rule (or the mutable tag does not exist)."""


@dataclass(frozen=True, slots=True)
class RegistryFailure:
    """The registry (or the rule, for ``config``) failed; ``last_known`` is the last
    freshest artifact seen, when the caller still has it; ``retry_after`` the seconds the
    registry asked us to wait (HTTP 429), when it said."""

    reason: ErrorReason
    message: str = ""
    last_known: Fresh | None = None
    retry_after: float | None = None


Observation = Fresh | NoMatch | RegistryFailure


def is_helm(target: Target) -> bool:
    return target.id.kind is TargetKind.HELM_CHART


def version_text(target: Target, fresh: Fresh) -> str:
    if is_helm(target):
        return fresh.chart_version or fresh.tag.replace("_", "+")
    return fresh.tag


def target_revision(target: Target, fresh: Fresh) -> str:
    """What Flux will report once it applied ``fresh``: ``tag@digest`` or a chart version."""
    if is_helm(target):
        return version_text(target, fresh)
    return format_oci_revision(fresh.tag, fresh.digest)


def revision_key(target: Target, revision: str) -> str:
    return chart_version_key(revision, has_values_files=target.has_values_files)


def applied_key(target: Target) -> str | None:
    applied = target.applied
    if applied is None:
        return None
    if is_helm(target):
        return applied.chart_version
    if applied.tag is None and applied.digest is None:
        return None
    return format_oci_revision(applied.tag, applied.digest)


def is_applied(target: Target, fresh: Fresh) -> bool:
    applied = target.applied
    if applied is None:
        return False
    if is_helm(target):
        return applied.chart_version == revision_key(target, version_text(target, fresh))
    if applied.tag != fresh.tag:
        return False
    return fresh.digest is None or applied.digest == fresh.digest


def behind_count(target: Target, fresh: Fresh) -> int:
    """Versions between the applied one and ``fresh``: 1 for a moved mutable tag."""
    if target.rule.kind is RuleKind.TAG:
        return 1
    return max(1, fresh.versions_behind)
