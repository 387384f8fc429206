"""Which tag Flux would pick from a repository's tag list, reproduced exactly.

The exporter's verdicts ("behind", "N newer tags") are only as good as its
agreement with Flux, so this module follows the two code paths Flux really runs
instead of a generic "highest semver":

OCIRepository (source-controller ``getTagBySemver``; :attr:`Flavor.OCI`)
    keep tags matched by ``semverFilter`` (RE2, unanchored search), parse each
    with fluxcd/pkg ``version.ParseVersion``, keep those inside the Masterminds
    range, take the highest and use its original tag text. With the Helm chart
    layer as ``layerSelector`` (:attr:`Flavor.OCI_CHART`) ``_`` reads as ``+`` first.

    ``ParseVersion`` since Flux 2.7 (fluxcd/pkg/version v0.8, source-controller
    v1.7): the tag must hold two dots, then Masterminds' loose parser takes it, so
    ``2025.02.03``, ``v01.2.3``, ``1.2-beta.5`` and ``12.02+build.1`` are versions;
    ``1.2``, ``v1`` and ``1.2.3.4`` are skipped. Flux 2.6 and earlier took strict
    semver after one optional leading ``v`` (no leading zeros): the ``*_FLUX_2_6``
    flavours, chosen by :class:`TagParsing`.

HelmChart from an OCI HelmRepository (Helm's registry client ``Tags`` and
source-controller ``getLastMatchingVersionOrConstraint``; :attr:`Flavor.HELM`)
    read ``_`` as ``+`` in every tag and keep strict semver only (no ``v``);
    an empty version or ``*`` means the latest stable release; a version equal
    to a chart version wins outright; otherwise the highest inside the range.
    A ``spec.version`` that ``ParseVersion`` reads as a version is used without
    listing tags (:func:`is_pinned_chart_version`).

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
from enum import StrEnum

from exporter.flux.constraints import Constraints, InvalidConstraint
from exporter.flux.regex import RegexError, Search
from exporter.flux.semver import Version, flux_version_or_none, strict_version_or_none
from exporter.model import Flavor, TagRule


class TagParsing(StrEnum):
    """Which fluxcd/pkg ``version.ParseVersion`` rule the watched Flux runs.

    The value of the ``tag_parsing`` setting (``FLUX_OCI_TRIGGER_TAG_PARSING``).
    """

    FLUX_2_7 = "flux-2.7"
    """Flux 2.7 and later (source-controller v1.7+): two dots, then the loose parser."""
    FLUX_2_6 = "flux-2.6"
    """Flux 2.6 and earlier: strict semver after one optional leading ``v``."""


_FLUX_2_6_FLAVORS = {
    Flavor.OCI: Flavor.OCI_FLUX_2_6,
    Flavor.OCI_CHART: Flavor.OCI_CHART_FLUX_2_6,
}


def flavor_for(flavor: Flavor, tag_parsing: TagParsing) -> Flavor:
    """The flavour that reads tags as ``tag_parsing`` says, for a rule found as ``flavor``.

    ``Flavor.OCI`` and ``Flavor.OCI_CHART`` become their ``*_FLUX_2_6`` twins under
    ``TagParsing.FLUX_2_6``; ``Flavor.HELM`` (Helm's own strict parser) never changes.
    """
    if tag_parsing is TagParsing.FLUX_2_6:
        return _FLUX_2_6_FLAVORS.get(flavor, flavor)
    return flavor


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
    if flavor is Flavor.OCI:
        return flux_version_or_none(tag)
    if flavor is Flavor.OCI_CHART:
        return flux_version_or_none(tag.replace("_", "+"))
    if flavor is Flavor.HELM:
        return strict_version_or_none(tag.replace("_", "+"))
    if flavor is Flavor.OCI_CHART_FLUX_2_6:
        return strict_version_or_none(tag.replace("_", "+"), v_prefix=True)
    return strict_version_or_none(tag, v_prefix=True)  # Flavor.OCI_FLUX_2_6


def is_pinned_chart_version(version: str, tag_parsing: TagParsing = TagParsing.FLUX_2_7) -> bool:
    """Whether source-controller takes a HelmChart ``spec.version`` as a concrete version.

    It then pulls that tag without listing the repository, so nothing newer can
    ever be picked. The test is fluxcd/pkg ``version.ParseVersion`` (the rule
    ``tag_parsing`` names): since Flux 2.7 ``2025.02.03``, ``v1.2.3`` and
    ``1.2-beta.5`` are pins; before, strict semver with one optional leading ``v``.
    """
    if tag_parsing is TagParsing.FLUX_2_6:
        return strict_version_or_none(version, v_prefix=True) is not None
    return flux_version_or_none(version) is not None


def _go_only_error(pattern: str) -> str | None:
    """What Go's ``regexp`` refuses although RE2 accepts it, or None.

    Two cases: a ``\\C`` escape (any byte) and a capture group name with non-ASCII
    letters (Go allows ``[A-Za-z0-9_]`` only). Escapes, ``\\Q...\\E`` and character
    classes are skipped as Go's parser skips them. Left to RE2, as too rare to copy:
    Go's (1.25+) lenient ``\\p{...}`` names over its own Unicode tables, and its limit
    of 1000 nesting levels.
    """
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            if pattern[i + 1] == "C":
                return "invalid escape sequence: `\\C`"
            if pattern[i + 1] == "Q" and not in_class:
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
            else:
                i += 2
        elif in_class:
            end = pattern.find(":]", i + 2) if pattern.startswith("[:", i) else -1
            in_class = end >= 0 or c != "]"
            i = end + 2 if end >= 0 else i + 1
        elif c == "[":
            in_class = True
            i += 1
            i += pattern.startswith("^", i)
            i += pattern.startswith("]", i)  # a leading "]" is a member
        else:
            if pattern.startswith(("(?P<", "(?<"), i):
                start = pattern.index("<", i) + 1
                end = pattern.find(">", start)
                if end >= 0 and not pattern[start:end].isascii():
                    return f"invalid named capture: `{pattern[i : end + 1]}`"
            i += 1
    return None


def _compile_filter(pattern: str) -> Search:
    """``semverFilter`` as Go's ``regexp.Compile`` takes it (RE2 syntax, Go's few refusals)."""
    problem = _go_only_error(pattern)
    if problem is not None:
        raise InvalidRule(
            f"invalid semverFilter: invalid regular expression {pattern!r}: {problem}"
        )
    try:
        return Search(pattern)
    except RegexError as exc:
        raise InvalidRule(f"invalid semverFilter: {exc}") from None


_RANKED_MAX = 1024


class CompiledRule:
    """A :class:`TagRule` with its range and filter compiled once."""

    __slots__ = ("_constraints", "_exact", "_filter", "_ranked", "flavor", "rule")

    def __init__(self, rule: TagRule) -> None:
        self.rule = rule
        self.flavor = rule.flavor
        # tag lists come from the tag cache, one tuple per repository listing, shared by
        # every object on it: rank each once (by identity; the tuple is kept alive here)
        self._ranked: dict[int, tuple[tuple[str, ...], list[Candidate]]] = {}
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
        """Tags that pass the rule, the one Flux picks first, then descending.

        A tuple is ranked once and remembered (do not mutate the returned list)."""
        if not isinstance(tags, tuple):
            return self._rank(tags)
        known = self._ranked.get(id(tags))
        if known is not None and known[0] is tags:
            return known[1]
        found = self._rank(tags)
        ranked = dict(self._ranked)  # copy, bound, swap: readers on other threads never
        if len(ranked) >= _RANKED_MAX:  # see a dict change size under them
            ranked.pop(next(iter(ranked)))
        ranked[id(tags)] = (tags, found)
        self._ranked = ranked
        return found

    def _rank(self, tags: Iterable[str]) -> list[Candidate]:
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


@functools.lru_cache(maxsize=4096)
def compile_rule(rule: TagRule) -> CompiledRule:
    """Compile a rule once (shared by every object with the same rule); raises
    :class:`InvalidRule` where Flux would fail the reconcile."""
    return CompiledRule(rule)
