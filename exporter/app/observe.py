"""What the registry says about one target: the freshest artifact Flux would apply.

Bridges the pure rule (``policy``) and the shared tag cache. A semver rule lists the
repository's tags (one listing per repository and access per TTL, whatever the number
of objects) and resolves the digest of the picked tag; a mutable tag rule only resolves
that tag's digest. Failures come back as ``RegistryFailure`` values, never exceptions.
"""

from __future__ import annotations

import time
from dataclasses import replace

from exporter.core.observation import Fresh, NoMatch, Observation, RegistryFailure, is_applied
from exporter.flux.policy import InvalidRule, compile_rule
from exporter.flux.targets import RuleKind, Target, TargetKind
from exporter.kube.access import RegistryAccess
from exporter.model import ErrorReason, RepositoryRef
from exporter.registry.cache import TagCache
from exporter.registry.errors import RegistryError, RegistryNotFound, RegistryRateLimited

LISTED_RETRY_WAITS = (0.05, 0.1, 0.2, 0.4)  # seconds; 0.75 s in all


def observe(
    target: Target, access: RegistryAccess, cache: TagCache, last_known: Fresh | None
) -> Observation:
    rule = target.rule
    try:
        if rule.kind is RuleKind.TAG and rule.tag is not None:
            return _mutable_tag(target, rule.tag, access, cache)
        if rule.kind is RuleKind.SEMVER and rule.tag_rule is not None:
            return _semver(target, access, cache, last_known)
    except RegistryError as exc:
        wait = exc.retry_after if isinstance(exc, RegistryRateLimited) else None
        return RegistryFailure(exc.reason, str(exc), last_known, wait)
    raise ValueError(f"{target.id}: no registry observation for a {rule.kind} rule")


def _mutable_tag(target: Target, tag: str, access: RegistryAccess, cache: TagCache) -> Observation:
    repo = target.repository
    try:
        digest, stale = cache.digest(repo, tag, access.credentials, access.tls)
    except RegistryNotFound:
        return NoMatch()
    fresh = _with_creation(target, Fresh(tag=tag, digest=digest), access, cache)
    return fresh if not stale else RegistryFailure(ErrorReason.UNAVAILABLE, "stale", fresh)


def _semver(
    target: Target, access: RegistryAccess, cache: TagCache, last_known: Fresh | None
) -> Observation:
    assert target.rule.tag_rule is not None
    try:
        compiled = compile_rule(target.rule.tag_rule)
    except InvalidRule as exc:
        return RegistryFailure(ErrorReason.CONFIG, str(exc), last_known)
    listing = cache.tags(target.repository, access.credentials, access.tls)
    candidates = compiled.candidates(listing.tags)
    if not candidates:
        return NoMatch()
    best = candidates[0]
    digest, digest_stale = _listed_digest(target.repository, best.tag, access, cache)
    applied = target.applied
    if target.id.kind is TargetKind.HELM_CHART:
        applied_text = applied.chart_version if applied else None
    else:
        applied_text = applied.tag if applied else None
    behind = compiled.newer_than(listing.tags, applied_text) if applied_text else len(candidates)
    fresh = Fresh(
        tag=best.tag,
        digest=digest,
        chart_version=best.chart_version if target.id.kind is TargetKind.HELM_CHART else None,
        versions_behind=behind,
    )
    fresh = _with_creation(target, fresh, access, cache)
    if listing.stale or digest_stale:
        reason = listing.error or ErrorReason.UNAVAILABLE
        return RegistryFailure(reason, "serving the last good tag list", fresh)
    return fresh


def _listed_digest(
    repo: RepositoryRef, tag: str, access: RegistryAccess, cache: TagCache
) -> tuple[str, bool]:
    """The digest of a tag the listing holds. Right after a push (the moment a push event
    brings us here) the listing can name a tag whose manifest still answers 404 for a
    few milliseconds: ask again briefly rather than report ``not_found``."""
    for wait in (*LISTED_RETRY_WAITS, None):
        try:
            return cache.digest(repo, tag, access.credentials, access.tls)
        except RegistryNotFound:
            if wait is None:
                raise
            cache.expire_digest(repo, tag, access.credentials, access.tls)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _with_creation(target: Target, fresh: Fresh, access: RegistryAccess, cache: TagCache) -> Fresh:
    """A new artifact's creation time starts its lag, when the cache knows it already; an
    applied one needs none. Reading it is left to the caller (:func:`creation_wanted`), off
    the check's critical path: until then the lag starts when the artifact was first seen."""
    if fresh.digest is None or is_applied(target, fresh):
        return fresh
    known = cache.known_created(target.repository, fresh.digest, access.credentials, access.tls)
    if known is None or known[0] is None:
        return fresh
    return replace(fresh, created_at=known[0])


def creation_wanted(target: Target, observation: Observation) -> str | None:
    """The digest of the new artifact observed, when its creation time is not known."""
    fresh = observation.last_known if isinstance(observation, RegistryFailure) else observation
    if not isinstance(fresh, Fresh) or fresh.digest is None or fresh.created_at is not None:
        return None
    return None if is_applied(target, fresh) else fresh.digest
