"""Flux's ``status.artifact.revision``: what it says was applied.

The string has changed shape across Flux releases and differs by kind, and the
verdict "up to date or behind" hangs on reading it right, so every shape lives here:

OCIRepository
    ``<tag>@sha256:<hex>`` (Flux >= 0.40, tag and semver refs), ``sha256:<hex>``
    (digest refs), ``<tag>/<hex>`` (Flux <= 0.39). An OCI tag is
    ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``: it holds neither ``@`` nor ``/``, so the
    split at the last ``@`` (or ``/``) is unambiguous; anything else is refused.
HelmChart
    The chart version. When ``spec.valuesFiles`` is set, source-controller replaces the
    version's build metadata with the object's generation (Masterminds ``SetMetadata``):
    chart ``1.0.0+abc`` becomes revision ``1.0.0+7``. The chart's own build metadata is
    then lost, so with values files a chart version is compared without build metadata
    (:func:`chart_version_key`); without values files the revision is the chart version.

Parsing never raises: a string it cannot read comes back as a :class:`RevisionProblem`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_LEGACY_HEX = re.compile(r"[a-f0-9]{64}")
# semver.org 2.0.0, without the leading-zero rules (Flux's own parser already judged it)
_CHART_VERSION = re.compile(
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_SHOWN = 80


@dataclass(frozen=True, slots=True)
class AppliedRevision:
    """One applied revision, read. ``digest`` is the OCI manifest digest."""

    tag: str | None
    digest: str | None
    chart_version: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class RevisionProblem:
    """A revision string that fits no known shape, with why."""

    raw: str
    reason: str


def _shown(raw: str) -> str:
    """The value as a quoted literal, bounded after escaping (an escape is up to 10 chars)."""
    text = repr(raw)
    return text if len(text) <= _SHOWN + 2 else text[: _SHOWN + 1] + "…'"


def is_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


def is_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None


def parse_oci_revision(raw: str) -> AppliedRevision | RevisionProblem:
    """Read an OCIRepository revision in any of its shapes."""
    if not raw:
        return RevisionProblem(raw, "empty revision")
    if is_digest(raw):
        return AppliedRevision(tag=None, digest=raw, chart_version=None, raw=raw)
    tag, at, digest = raw.rpartition("@")
    if at:
        if not is_digest(digest):
            return RevisionProblem(raw, f"{_shown(raw)}: no sha256/sha512 digest after '@'")
        if not is_tag(tag):
            return RevisionProblem(raw, f"{_shown(raw)}: invalid OCI tag before '@'")
        return AppliedRevision(tag=tag, digest=digest, chart_version=None, raw=raw)
    tag, slash, hex_digest = raw.rpartition("/")
    if slash and is_tag(tag) and _LEGACY_HEX.fullmatch(hex_digest):
        return AppliedRevision(tag=tag, digest=f"sha256:{hex_digest}", chart_version=None, raw=raw)
    return RevisionProblem(
        raw, f"{_shown(raw)}: expected <tag>@sha256:<hex>, sha256:<hex> or <tag>/<hex>"
    )


def format_oci_revision(tag: str | None, digest: str | None) -> str:
    """The revision Flux (>= 0.40) would report for ``tag`` at ``digest``."""
    if tag is None:
        if digest is None:
            raise ValueError("a revision needs a tag or a digest")
        return digest
    return tag if digest is None else f"{tag}@{digest}"


def chart_version_key(version: str, *, has_values_files: bool) -> str:
    """What of a chart version survives into the revision: all of it, or (with values
    files) all but the build metadata."""
    if has_values_files:
        return version.split("+", 1)[0]
    return version


def parse_chart_revision(raw: str, *, has_values_files: bool) -> AppliedRevision | RevisionProblem:
    """Read a HelmChart revision. ``chart_version`` is :func:`chart_version_key` of it.

    With values files the build metadata must be the generation (digits); without them,
    any build metadata belongs to the chart.
    """
    match = _CHART_VERSION.fullmatch(raw)
    if match is None:
        return RevisionProblem(raw, f"{_shown(raw)}: not a semantic version")
    build = match.group(5)
    if has_values_files:
        if build is None or not build.isdigit():
            return RevisionProblem(
                raw, f"{_shown(raw)}: with valuesFiles Flux appends +<generation>"
            )
        version = raw.split("+", 1)[0]
    else:
        version = raw
    return AppliedRevision(tag=None, digest=None, chart_version=version, raw=raw)
