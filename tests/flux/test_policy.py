"""Flux's tag choice, case by case: each row is a behaviour of source-controller or Helm."""

from __future__ import annotations

import random

import pytest

from exporter.flux.policy import (
    InvalidRule,
    TagParsing,
    compile_rule,
    flavor_for,
    is_pinned_chart_version,
    parse_flux_tag,
)
from exporter.model import Flavor, TagRule

OCI, HELM, OCI_CHART = Flavor.OCI, Flavor.HELM, Flavor.OCI_CHART
OCI_26, OCI_CHART_26 = Flavor.OCI_FLUX_2_6, Flavor.OCI_CHART_FLUX_2_6


def pick(
    tags: list[str], semver: str, semver_filter: str | None = None, flavor: Flavor = OCI
) -> str | None:
    return compile_rule(TagRule(semver, semver_filter, flavor)).select(tags)


@pytest.mark.parametrize(
    ("tags", "semver", "semver_filter", "expected"),
    [
        pytest.param(
            ["1.0.0", "v1.1.0", "0.9.0"],
            ">=1.0.0",
            None,
            "v1.1.0",
            id="v prefix kept in the answer",
        ),
        pytest.param(
            ["1.1.0", "1.2", "v2", "3"], "*", None, "1.1.0", id="one and two part tags skipped"
        ),
        pytest.param(
            ["1.1.0", "1.2.3.4", "v1.2.3.4"], "*", None, "1.1.0", id="four part tags skipped"
        ),
        pytest.param(
            ["1.1.0", "01.2.3", "1.02.0"], "*", None, "01.2.3", id="leading zeros are numbers"
        ),
        pytest.param(["1.1.0", "V2.0.0", "vv2.0.0"], "*", None, "1.1.0", id="only one lowercase v"),
        pytest.param(
            ["1.1.0", "2.0.0_build"],
            "*",
            None,
            "1.1.0",
            id="underscore is not build metadata for OCI",
        ),
        pytest.param(["1.0.0", "1.1.0-rc.1"], ">=1.0.0", None, "1.0.0", id="prereleases excluded"),
        pytest.param(
            ["1.0.0", "1.1.0-rc.1"],
            ">=1.0.0-0",
            None,
            "1.1.0-rc.1",
            id="prerelease range admits them",
        ),
        pytest.param(
            ["1.0.0", "1.5.0-rc.1", "2.0.0"],
            ">=1.0.0-0 <2.0.0",
            None,
            "1.5.0-rc.1",
            id="whole AND group",
        ),
        pytest.param(
            ["1.0.0", "3.1.0-rc.1"], ">=1.0.0-0 <2 || >=3", None, "1.0.0", id="not other OR groups"
        ),
        pytest.param(["2.0.0", "1.1.0", "1.0.0"], "*", "^1", "1.1.0", id="filter before range"),
        pytest.param(
            ["1.0.0", "1.1.0-rc.1", "1.1.0-rc.2"],
            ">=1.0.0-0",
            "rc",
            "1.1.0-rc.2",
            id="filter unanchored",
        ),
        pytest.param(
            ["v1.0.0", "1.1.0", "v0.9.0"], "*", "^v", "v1.0.0", id="filter sees the raw tag"
        ),
        pytest.param(
            ["1.0.0", "1.10.0", "1.9.0"], "*", r"^1\.\d\.", "1.9.0", id="filter anchors when asked"
        ),
        pytest.param(["1.2.3", "1.3.0", "2.0.0"], "^1.2", None, "1.3.0", id="caret"),
        pytest.param(["0.2.3", "0.2.9", "0.3.0"], "^0.2.3", None, "0.2.9", id="caret below 1.0"),
        pytest.param(["1.2.3", "1.2.9", "1.3.0"], "~1.2.3", None, "1.2.9", id="tilde"),
        pytest.param(["1.4.5", "1.4.6", "1.2.0"], "1.2 - 1.4.5", None, "1.4.5", id="hyphen range"),
        pytest.param(["1.0.0", "2.0.0"], "3.x", None, None, id="nothing matches"),
        pytest.param([], "*", None, None, id="no tags"),
        pytest.param(["latest", "main"], "*", None, None, id="no version tags"),
    ],
)
def test_oci(tags: list[str], semver: str, semver_filter: str | None, expected: str | None) -> None:
    assert pick(tags, semver, semver_filter) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["1.2.3", "v1.2.3"], "1.2.3"),
        (["v1.2.3", "1.2.3"], "1.2.3"),
        (["1.2.3+b", "1.2.3+a", "v1.2.3+a"], "1.2.3+a"),
        (["1.2.3+z", "v1.2.4", "1.2.4+a"], "1.2.4+a"),
    ],
)
def test_ties_go_to_the_smallest_tag_text(tags: list[str], expected: str) -> None:
    assert pick(tags, "*") == expected
    assert pick(list(reversed(tags)), "*") == expected


@pytest.mark.parametrize(
    ("tags", "semver", "expected"),
    [
        pytest.param(
            ["1.2.3", "1.2.3_build.1", "1.2.2"], "*", "1.2.3", id="underscore is build metadata"
        ),
        pytest.param(
            ["1.2.2", "1.2.3_build.1"], ">1.2.2", "1.2.3_build.1", id="registry tag returned"
        ),
        pytest.param(["1.2.3", "v1.3.0"], "*", "1.2.3", id="v prefix skipped"),
        pytest.param(["1.2.3", "1.3.0-rc.1"], "", "1.2.3", id="empty is latest stable"),
        pytest.param(["1.2.3", "1.3.0-rc.1"], "*", "1.2.3", id="star is latest stable"),
        pytest.param(["1.2.3", "1.3.0-rc.1"], ">=1.0.0-0", "1.3.0-rc.1", id="prerelease range"),
        pytest.param(["1.2.3", "1.2.3_a_b"], "*", "1.2.3", id="two underscores is invalid"),
        pytest.param(["1.2", "1.2.0"], "~1", "1.2.0", id="two parts skipped"),
        pytest.param(["1.2.3_b", "1.2.3_a", "1.2.3"], "~1.2", "1.2.3", id="tie"),
        pytest.param(
            ["1.2.3_b", "1.2.3_a", "1.2.3"], "1.2.3+b", "1.2.3_b", id="exact chart version wins"
        ),
        pytest.param(["1.2.3", "1.2.4"], "1.2.3", "1.2.3", id="exact"),
        pytest.param(["1.2.4"], "1.2.3", None, id="exact missing"),
    ],
)
def test_helm(tags: list[str], semver: str, expected: str | None) -> None:
    assert pick(tags, semver, flavor=HELM) == expected


def test_helm_candidate_carries_the_chart_version() -> None:
    rule = compile_rule(TagRule("*", flavor=HELM))
    [best, other] = rule.candidates(["1.0.0", "1.2.3_build.1"])
    assert (best.tag, best.chart_version, str(best.version)) == (
        "1.2.3_build.1",
        "1.2.3+build.1",
        "1.2.3+build.1",
    )
    assert (other.tag, other.chart_version) == ("1.0.0", "1.0.0")


def test_candidates_highest_first() -> None:
    rule = compile_rule(TagRule(">=1.0.0-0"))
    tags = ["1.0.0", "2.0.0-rc.1", "1.10.0", "v1.9.0", "2.0.0-rc.10", "2.0.0-beta", "junk", "1.0.0"]
    assert [c.tag for c in rule.candidates(tags)] == [
        "2.0.0-rc.10",
        "2.0.0-rc.1",
        "2.0.0-beta",
        "1.10.0",
        "v1.9.0",
        "1.0.0",
    ]


@pytest.mark.parametrize(
    ("applied", "expected"),
    [
        ("1.0.0", 3),
        ("v1.1.0", 2),
        ("1.5.0", 2),
        ("2.0.0", 0),
        ("3.0.0", 0),
        ("0.1.0", 4),  # outside the range: every passing tag is newer
        ("latest", 4),
        ("sha256:abc", 4),
        ("1.2", 4),
    ],
)
def test_newer_than(applied: str, expected: int) -> None:
    rule = compile_rule(TagRule(">=1.0.0"))
    tags = ["1.0.0", "1.1.0", "1.2.0-rc.1", "1.9.0", "2.0.0", "0.5.0", "latest"]
    assert rule.newer_than(tags, applied) == expected


def test_newer_than_helm_reads_either_spelling() -> None:
    rule = compile_rule(TagRule("*", flavor=HELM))
    tags = ["1.0.0", "1.0.1_build.1", "1.1.0"]
    assert rule.newer_than(tags, "1.0.0") == 2
    assert rule.newer_than(tags, "1.0.1+build.1") == 1
    assert rule.newer_than(tags, "1.0.1_build.1") == 1


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (TagRule(">= bar"), "semver range"),
        (TagRule(""), "semver range"),
        (TagRule("1.2.3.4"), "semver range"),
        (TagRule(">=1.0.0", semver_filter="(unclosed"), "semverFilter"),
        (TagRule(">=1.0.0", semver_filter="(?<=look)behind"), "semverFilter"),
        (TagRule(">=1.0.0", semver_filter=r"(a)\1"), "semverFilter"),
        (TagRule("^1.x.y", flavor=HELM), "semver range"),
        (TagRule("*", semver_filter="^v", flavor=HELM), "semverFilter"),
    ],
)
def test_invalid_rules(rule: TagRule, message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        compile_rule(rule)


@pytest.mark.parametrize(
    ("version", "pinned"),
    [
        ("1.2.3", True),
        ("v1.2.3", True),
        ("1.2.3-rc.1+build.5", True),
        ("0.0.0", True),
        ("", False),
        ("*", False),
        ("1.2", False),
        ("v1", False),
        ("^1.2.3", False),
        (">=1.2.3", False),
        ("1.2.x", False),
        ("1.2.3.4", False),
        ("1.2.3_build", False),
        ("1.2.3 ", False),
    ],
)
def test_is_pinned_chart_version(version: str, pinned: bool) -> None:
    """Versions both rules read alike."""
    assert is_pinned_chart_version(version) is pinned
    assert is_pinned_chart_version(version, TagParsing.FLUX_2_6) is pinned


@pytest.mark.parametrize(
    ("version", "flux_2_7", "flux_2_6"),
    [
        ("01.2.3", True, False),
        ("2025.02.03", True, False),
        ("v01.007.02", True, False),
        ("1.2-beta.5", True, False),
        ("12.02+build.1", True, False),
        ("v12-beta.0abc.0abc", True, False),
        ("1.2.3-01", False, False),  # a numeric prerelease identifier never has a leading zero
        ("1.2.3-" + "a" * 250, True, True),  # 256 bytes: Masterminds' limit
        ("1.2.3-" + "a" * 251, False, False),
    ],
)
def test_pinned_chart_version_follows_the_flux_release(
    version: str, flux_2_7: bool, flux_2_6: bool
) -> None:
    """source-controller's getChartVersion shortcut: whatever ParseVersion reads is a pin.

    Since Flux 2.7 that takes any text with two dots that the loose parser reads.
    """
    assert is_pinned_chart_version(version) is flux_2_7
    assert is_pinned_chart_version(version, TagParsing.FLUX_2_7) is flux_2_7
    assert is_pinned_chart_version(version, TagParsing.FLUX_2_6) is flux_2_6


@pytest.mark.parametrize(
    ("tag", "flavor", "expected"),
    [
        ("v1.2.3", OCI, (1, 2, 3, "", "")),
        ("1.2.3-rc.1+b.2", OCI, (1, 2, 3, "rc.1", "b.2")),
        ("1.2.3_b.2", OCI, None),
        ("1.2.3_b.2", HELM, (1, 2, 3, "", "b.2")),
        ("v1.2.3", HELM, None),
        ("1.2.3-01", OCI, None),
        ("18446744073709551616.0.0", OCI, None),
        ("18446744073709551615.0.0", OCI, (2**64 - 1, 0, 0, "", "")),
        ("2025.02.03", OCI, (2025, 2, 3, "", "")),
        ("2025.02.03", OCI_CHART, (2025, 2, 3, "", "")),
        ("2025.02.03", HELM, None),
        ("2025.02.03", OCI_26, None),
        ("1.2-beta.5", OCI, (1, 2, 0, "beta.5", "")),
        ("1.2-beta.5", OCI_26, None),
        ("12.02+build.1", OCI, (12, 2, 0, "", "build.1")),
        ("12.02_build.1", OCI_CHART, (12, 2, 0, "", "build.1")),
        ("12.02_build.1", OCI, None),
        ("12.02_build.1", HELM, None),
        ("12.02_build.1", OCI_CHART_26, None),
        ("v12-beta.0abc.0abc", OCI, (12, 0, 0, "beta.0abc.0abc", "")),
        ("1.2", OCI, None),
        ("v1", OCI, None),
        ("1.2.3.4", OCI, None),
        ("V1.2.3", OCI, None),
        ("v1.2.3", OCI_26, (1, 2, 3, "", "")),
        ("v1.2.3_b", OCI_CHART_26, (1, 2, 3, "", "b")),
    ],
)
def test_parse_flux_tag(
    tag: str, flavor: Flavor, expected: tuple[int, int, int, str, str] | None
) -> None:
    v = parse_flux_tag(tag, flavor)
    assert (
        None if v is None else (v.major, v.minor, v.patch, v.prerelease, v.metadata)
    ) == expected


def test_ten_thousand_tags_pick_the_highest_match() -> None:
    rng = random.Random(7)
    tags = [
        f"{'v' if rng.random() < 0.3 else ''}{rng.randrange(30)}.{rng.randrange(60)}.{i}"
        + (f"-rc.{rng.randrange(9)}" if rng.random() < 0.2 else "")
        for i in range(10_000)
    ] + ["latest", "main"]
    rule = compile_rule(TagRule("^5.0 || >=10.0.0-0", semver_filter=r"^v?\d"))
    best = rule.select(tags)
    assert best is not None
    chosen = parse_flux_tag(best, OCI)
    assert chosen is not None
    kept = rule.candidates(tags)
    assert kept[0].tag == best
    assert all(c.version.key <= chosen.key for c in kept)
    assert len(kept) > 100


def test_oci_repository_with_a_helm_chart_layer_reads_underscore_as_plus() -> None:
    """source-controller's convertOCIToSemVerTag: `_` -> `+`, then ParseVersion (a `v` allowed)."""
    rule = compile_rule(TagRule(">=1.0.0", None, Flavor.OCI_CHART))
    assert rule.select(["1.0.0", "v1.0.1_build.2", "1.0.0_x"]) == "v1.0.1_build.2"
    plain = compile_rule(TagRule(">=1.0.0", None, Flavor.OCI))
    assert plain.select(["1.0.0", "v1.0.1_build.2"]) == "1.0.0"


@pytest.mark.parametrize(
    ("tags", "semver", "flux_2_7", "flux_2_6"),
    [
        pytest.param(
            ["2024.12.31", "2025.02.03", "latest"], "*", "2025.02.03", "2024.12.31", id="calver"
        ),
        pytest.param(
            ["1.1.0", "1.2-beta.5", "1.2.0-beta.4"],
            ">=1.0.0-0",
            "1.2-beta.5",
            "1.2.0-beta.4",
            id="two parts and a prerelease",
        ),
        pytest.param(
            ["12.1.0", "12.02+build.1"], "^12", "12.02+build.1", "12.1.0", id="build metadata"
        ),
        pytest.param(["1.2", "1.2.3.4", "v1"], "*", None, None, id="fewer or more parts"),
    ],
)
def test_quirky_tags(
    tags: list[str], semver: str, flux_2_7: str | None, flux_2_6: str | None
) -> None:
    """What fluxcd/pkg/version v0.8 (Flux 2.7, source-controller v1.7) changed."""
    assert pick(tags, semver) == flux_2_7
    assert pick(tags, semver, flavor=OCI_26) == flux_2_6
    charts = [t.replace("+", "_") for t in tags]
    chart_pick = pick(charts, semver, flavor=OCI_CHART)
    assert chart_pick == (flux_2_7.replace("+", "_") if flux_2_7 else None)
    assert pick(charts, semver, flavor=OCI_CHART_26) == (
        flux_2_6.replace("+", "_") if flux_2_6 else None
    )


def test_helm_tags_stay_strict() -> None:
    """Helm's registry client keeps StrictNewVersion tags only, Flux 2.7 or not."""
    tags = ["2024.12.31", "2025.02.03", "1.2-beta.5", "12.02_build.1", "v3.0.0"]
    assert pick(tags, "*", flavor=HELM) == "2024.12.31"
    assert pick(tags, ">=0.0.0-0", flavor=HELM) == "2024.12.31"


def test_leading_zeros_tie_with_the_plain_spelling() -> None:
    assert pick(["2025.2.3", "2025.02.03", "v2025.02.03"], "*") == "2025.02.03"
    assert compile_rule(TagRule(">=2025.0.0")).newer_than(["2025.02.03"], "2025.2.3") == 0


@pytest.mark.parametrize(
    ("flavor", "flux_2_6"),
    [(OCI, OCI_26), (OCI_CHART, OCI_CHART_26), (HELM, HELM), (OCI_26, OCI_26)],
)
def test_flavor_for(flavor: Flavor, flux_2_6: Flavor) -> None:
    assert flavor_for(flavor, TagParsing.FLUX_2_7) is flavor
    assert flavor_for(flavor, TagParsing.FLUX_2_6) is flux_2_6
