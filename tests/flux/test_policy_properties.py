"""Properties of the tag choice over generated tag lists, checked against brute force.

The oracle reads every tag on its own (filter, Flux's parser, the range) and
compares versions pairwise; the engine under test sorts and tie-breaks. They
must agree on every list, in every order.
"""

from __future__ import annotations

import itertools

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.flux.constraints import Constraints
from exporter.flux.policy import CompiledRule, compile_rule, parse_flux_tag
from exporter.flux.semver import Version
from exporter.model import Flavor, TagRule

RANGES = [
    "*",
    ">=1.0.0",
    "^1.2",
    "~0.3",
    ">=1.0.0-0 <3",
    "1.x || 3.1.x",
    "!=2.2.2",
    "<=2.1",
    "1.1 - 2.2",
    ">0.1.2-rc.1",
    "^0.0",
    "2",
    "2.2.2+b1",
    "1.1.1",
]
FILTERS = [None, "^v", "rc", "[02]$", r"\+"]
# Tags some flavours skip: never a version, or one only since Flux 2.7 (leading zeros, two
# parts before a prerelease or build metadata).
ODD = [
    *("latest", "main", "1.2", "v3", "1.2.3.4", "sha-1a2b", "V1.0.0"),
    *("01.2.3", "2025.02.03", "v01.007.02", "1.2-beta.5", "12.02+build.1", "12.02_build.1"),
]
OCI_FAMILY = (Flavor.OCI, Flavor.OCI_CHART, Flavor.OCI_FLUX_2_6, Flavor.OCI_CHART_FLUX_2_6)

moderate = settings(max_examples=60, deadline=None)


@st.composite
def oci_tags(draw: st.DrawFn) -> str:
    core = ".".join(draw(st.sampled_from(["0", "1", "2", "0", "1", "2", "01"])) for _ in range(3))
    pre = draw(st.sampled_from(["", "-rc.1", "-rc.2", "-alpha", "-0", "-rc.10"]))
    meta = draw(st.sampled_from(["", "+b1", "+b2"]))
    prefix = draw(st.sampled_from(["", "", "v"]))
    return prefix + core + pre + meta


@st.composite
def helm_tags(draw: st.DrawFn) -> str:
    core = ".".join(str(draw(st.integers(0, 2))) for _ in range(3))
    pre = draw(st.sampled_from(["", "-rc.1", "-alpha", "-0"]))
    meta = draw(st.sampled_from(["", "_b1", "_b2", "_x_y"]))
    return core + pre + meta


def respellings(tag: str, flavor: Flavor) -> list[str]:
    """Other tags with the same precedence: Flux ties these, so the choice must not wobble."""
    sep = "_" if flavor is Flavor.HELM else "+"
    bare = tag.split(sep, 1)[0]
    spellings = [bare, bare + sep + "b1", bare + sep + "b2"]
    if flavor is Flavor.OCI:
        bare = bare.removeprefix("v")
        spellings += [bare, "v" + bare, "v" + bare + "+b2", "0" + bare]
    return spellings


@st.composite
def tag_lists(draw: st.DrawFn, flavor: Flavor) -> list[str]:
    versions = oci_tags() if flavor is Flavor.OCI else helm_tags()
    tags = draw(st.lists(st.one_of(versions, st.sampled_from(ODD)), min_size=1, max_size=20))
    for tag in draw(st.lists(st.sampled_from(tags), max_size=6)):
        tags.append(draw(st.sampled_from(respellings(tag, flavor))))
    return tags


@st.composite
def cases(draw: st.DrawFn) -> tuple[TagRule, list[str]]:
    flavor = draw(st.sampled_from(list(Flavor)))
    semver = draw(st.sampled_from([*RANGES, ""] if flavor is Flavor.HELM else RANGES))
    semver_filter = draw(st.sampled_from(FILTERS)) if flavor in OCI_FAMILY else None
    return TagRule(semver, semver_filter, flavor), draw(tag_lists(flavor))


def oracle_matches(rule: TagRule, tags: list[str]) -> list[tuple[str, Version]]:
    """Every tag Flux keeps, judged one at a time."""
    constraints = Constraints(rule.semver or "*")
    pattern = re2.compile(rule.semver_filter) if rule.semver_filter else None
    kept = []
    for tag in set(tags):
        if pattern is not None and pattern.search(tag) is None:
            continue
        version = parse_flux_tag(tag, rule.flavor)
        if version is not None and constraints.check(version):
            kept.append((tag, version))
    return kept


def compiled(rule: TagRule) -> CompiledRule:
    return compile_rule(rule)


@given(cases(), st.data())
@moderate
def test_choice_ignores_tag_order(case: tuple[TagRule, list[str]], data: st.DataObject) -> None:
    rule, tags = case
    shuffled = data.draw(st.permutations(tags))
    engine = compiled(rule)
    assert engine.select(shuffled) == engine.select(tags)
    assert engine.candidates(shuffled) == engine.candidates(tags)


@given(cases())
@moderate
def test_choice_is_the_highest_match(case: tuple[TagRule, list[str]]) -> None:
    rule, tags = case
    chosen = compiled(rule).select(tags)
    matches = oracle_matches(rule, tags)
    if chosen is None:
        assert matches == []
        return
    assert chosen in tags
    chosen_version = parse_flux_tag(chosen, rule.flavor)
    assert chosen_version is not None
    assert (chosen, chosen_version) in matches
    assert all(v.compare(chosen_version) <= 0 for _, v in matches)


@given(cases())
@moderate
def test_candidates_are_exactly_the_matches_descending(case: tuple[TagRule, list[str]]) -> None:
    rule, tags = case
    engine = compiled(rule)
    found = engine.candidates(tags)
    assert sorted(c.tag for c in found) == sorted(tag for tag, _ in oracle_matches(rule, tags))
    assert all(a.version.compare(b.version) >= 0 for a, b in itertools.pairwise(found))
    assert (engine.select(tags) is None) == (found == [])
    if found:
        assert engine.select(tags) == found[0].tag


@given(cases(), st.one_of(oci_tags(), helm_tags(), st.sampled_from(ODD)))
@moderate
def test_newer_than_counts_strictly_greater_matches(
    case: tuple[TagRule, list[str]], applied: str
) -> None:
    rule, tags = case
    engine = compiled(rule)
    matches = oracle_matches(rule, tags)
    applied_version = parse_flux_tag(applied, rule.flavor)
    expected = (
        len(matches)
        if applied_version is None
        else sum(1 for _, v in matches if v.compare(applied_version) > 0)
    )
    assert engine.newer_than(tags, applied) == expected
    chosen = engine.select(tags)
    if chosen is not None:
        assert engine.newer_than(tags, chosen) == 0
