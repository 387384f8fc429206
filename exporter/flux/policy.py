"""Which tag Flux would pick from a repository's tag list, reproduced exactly.

The exporter's verdicts ("behind", "N newer tags") are only as good as its
agreement with Flux, so this module follows the two code paths Flux really runs
instead of a generic "highest semver":

OCIRepository (source-controller ``getTagBySemver``)
    keep tags matched by ``semverFilter`` (RE2, unanchored search), parse each
    with fluxcd/pkg ``version.ParseVersion`` (strict semver after one optional
    leading ``v``: ``1.2``, ``v1`` and ``01.2.3`` are skipped), keep those inside
    the Masterminds range, take the highest and use its original tag text.

HelmChart from an OCI HelmRepository (Helm's registry client ``Tags`` and
source-controller ``getLastMatchingVersionOrConstraint``)
    read ``_`` as ``+`` in every tag and keep strict semver only (no ``v``);
    an empty version or ``*`` means the latest stable release; a version equal
    to a chart version wins outright; otherwise the highest inside the range.
    A ``spec.version`` that is itself a version is used without listing tags
    (:func:`is_pinned_chart_version`).

Equal versions (``1.2.3`` and ``v1.2.3``, or two build metadata) tie in Flux,
which sorts with Go's unstable ``sort.Sort``: for up to 12 matches that is an
insertion sort, so the first tag in the registry's (lexically sorted) listing
wins. Here the lexically smallest tag wins, whatever the input order: the same
answer on such listings, and a deterministic one on every other.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.flux.constraints import Constraints, InvalidConstraint
from exporter.flux.regex import RegexError, Search
from exporter.flux.semver import Version, strict_version_or_none
from exporter.model import Flavor, TagRule


class InvalidRule(ValueError):
    """The range or the tag filter of a rule cannot be used, as Flux would refuse it too."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A tag that passes the rule.

    ``tag`` is the registry's text; ``version.original`` is what Flux calls the
    version: the tag itself for OCIRepository, the chart version (``_`` read as
    ``+``) for a HelmChart.
    """

    tag: str
    version: Version

    @property
    def chart_version(self) -> str:
        return self.version.original


@functools.lru_cache(maxsize=1 << 16)
def parse_flux_tag(tag: str, flavor: Flavor) -> Version | None:
    """The version Flux reads from a registry tag, or None when Flux skips the tag.

    Memoized: every poll re-reads mostly the same tags, and the answer depends
    on nothing else.
    """
    if flavor is Flavor.HELM:
        return strict_version_or_none(tag.replace("_", "+"))
    if flavor is Flavor.OCI_CHART:
        return strict_version_or_none(tag.replace("_", "+"), v_prefix=True)
    return strict_version_or_none(tag, v_prefix=True)


def is_pinned_chart_version(version: str) -> bool:
    """Whether source-controller takes a HelmChart ``spec.version`` as a concrete version.

    It then pulls that tag without listing the repository, so nothing newer can
    ever be picked. The test is fluxcd/pkg ``version.ParseVersion``: strict
    semver, one leading ``v`` allowed.
    """
    return parse_flux_tag(version, Flavor.OCI) is not None


def _compile_filter(pattern: str) -> Search:
    try:
        return Search(pattern)
    except RegexError as exc:
        raise InvalidRule(f"invalid semverFilter: {exc}") from None


class CompiledRule:
    """A :class:`TagRule` with its range and filter compiled once."""

    __slots__ = ("_constraints", "_exact", "_filter", "flavor", "rule")

    def __init__(self, rule: TagRule) -> None:
        self.rule = rule
        self.flavor = rule.flavor
        self._filter: Search | None = None
        self._exact: str | None = None
        text = rule.semver
        if rule.flavor is Flavor.HELM:
            if rule.semver_filter:
                raise InvalidRule("semverFilter applies to OCIRepository only, not to HelmChart")
            if text in ("", "*"):
                text = "*"
            else:
                self._exact = text
        elif rule.semver_filter:
            self._filter = _compile_filter(rule.semver_filter)
        try:
            self._constraints = Constraints(text)
        except InvalidConstraint as exc:
            raise InvalidRule(f"invalid semver range {rule.semver!r}: {exc}") from exc

    def candidates(self, tags: Iterable[str]) -> list[Candidate]:
        """Tags that pass the rule, the one Flux picks first, then descending."""
        found: list[Candidate] = []
        search = self._filter.matches if self._filter is not None else None
        check = self._constraints.check
        flavor = self.flavor
        for tag in dict.fromkeys(tags):
            if search is not None and not search(tag):
                continue
            version = parse_flux_tag(tag, flavor)
            if version is not None and check(version):
                found.append(Candidate(tag, version))
        # Ties: a HelmChart version equal to a chart version wins outright (its
        # range, that same version, admits only equal versions); then the
        # smallest tag text. Python's sort is stable, reverse=True included.
        exact = self._exact
        found.sort(key=lambda c: (c.version.original != exact, c.tag))
        found.sort(key=lambda c: c.version.key, reverse=True)
        return found

    def select(self, tags: Iterable[str]) -> str | None:
        """The registry tag Flux would pick, or None when no tag passes."""
        found = self.candidates(tags)
        return found[0].tag if found else None

    def newer_than(self, tags: Iterable[str], applied_tag: str) -> int:
        """How many passing tags rank strictly above ``applied_tag``.

        An applied tag Flux could not have read as a version (``latest``, a digest)
        counts every passing tag as newer.
        """
        found = self.candidates(tags)
        applied = parse_flux_tag(applied_tag, self.flavor)
        if applied is None:
            return len(found)
        floor = applied.key
        return sum(1 for c in found if c.version.key > floor)

    def __repr__(self) -> str:
        return f"CompiledRule({self.rule!r})"


def compile_rule(rule: TagRule) -> CompiledRule:
    """Compile a rule once; raises :class:`InvalidRule` where Flux would fail the reconcile."""
    return CompiledRule(rule)
