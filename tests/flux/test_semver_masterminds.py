"""Parity with Masterminds/semver v3: every case of its own test tables must agree.

The tables (tests/data/masterminds-semver-cases.json) were extracted from the
library's version_test.go and constraints_test.go; a disagreement here means
the exporter would predict a different tag than Flux picks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.flux.constraints import Constraints, InvalidConstraint, parse_comparator
from exporter.flux.semver import (
    InvalidVersion,
    flux_version_or_none,
    parse_strict_version,
    parse_version,
    strict_version_or_none,
)

CASES: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "masterminds-semver-cases.json").read_text()
)


def _params(table: str, *fields: str) -> list[Any]:
    rows = CASES[table]
    return [
        pytest.param(*(row[f] for f in fields), id=" | ".join(repr(row[f]) for f in fields))
        for row in rows
    ]


def test_tables_are_present() -> None:
    sizes = {
        name: len(CASES[name])
        for name in ("new_version_loose", "compare", "constraint_check", "new_constraint")
    }
    assert all(size > 10 for size in sizes.values()), sizes


@pytest.mark.parametrize(("text", "error"), _params("new_version_loose", "version", "error"))
def test_new_version(text: str, error: bool) -> None:
    if error:
        with pytest.raises(InvalidVersion):
            parse_version(text)
    else:
        assert parse_version(text).original == text


@pytest.mark.parametrize(("a", "b", "expected"), _params("compare", "a", "b", "expected"))
def test_compare(a: str, b: str, expected: int) -> None:
    va, vb = parse_version(a), parse_version(b)
    assert va.compare(vb) == expected
    assert vb.compare(va) == -expected


@pytest.mark.parametrize(
    ("constraint", "version", "check"),
    _params("constraint_check", "constraint", "version", "check"),
)
def test_constraint_check(constraint: str, version: str, check: bool) -> None:
    v = parse_version(version)
    if constraint == "":
        # These rows come from the library's TestConstraintCheck, which calls the
        # single-comparator parser directly: there "" means "*". The range parser
        # (NewConstraint, what Flux calls) rejects an empty range.
        with pytest.raises(InvalidConstraint):
            Constraints(constraint)
        assert parse_comparator(constraint).check(v) is check
    else:
        assert Constraints(constraint).check(v) is check


@pytest.mark.parametrize(("constraint", "error"), _params("new_constraint", "constraint", "error"))
def test_new_constraint(constraint: str, error: bool) -> None:
    if error:
        with pytest.raises(InvalidConstraint):
            Constraints(constraint)
    else:
        assert Constraints(constraint).text == constraint


# Cases read from the library's source rather than its tables.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2", (1, 2, 0, "", "")),
        ("v1", (1, 0, 0, "", "")),
        ("01.002.3", (1, 2, 3, "", "")),
        ("1.2.3-rc.1+build.5", (1, 2, 3, "rc.1", "build.5")),
        ("18446744073709551615.0.0", (2**64 - 1, 0, 0, "", "")),
    ],
)
def test_loose_parts(text: str, expected: tuple[int, int, int, str, str]) -> None:
    v = parse_version(text)
    assert (v.major, v.minor, v.patch, v.prerelease, v.metadata) == expected


@pytest.mark.parametrize(
    "text",
    [
        "18446744073709551616.0.0",
        "V1.2.3",
        "1.2.3 ",
        "1.2.3\n",
        "\u0661.2.3",  # an Arabic-Indic digit: Go's [0-9] is ASCII only
    ],
)
def test_loose_rejects(text: str) -> None:
    with pytest.raises(InvalidVersion):
        parse_version(text)


@pytest.mark.parametrize("text", ["1.2.3", "0.0.0", "1.2.3-rc.1+b.2", "1.2.3+b-c", "1.2.3-0a"])
def test_strict_accepts(text: str) -> None:
    assert str(parse_strict_version(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v1.2.3",
        "1.2",
        "01.2.3",
        "1.02.3",
        "1.2.03",
        "1..3",
        "1.2.",
        "1.2.3.4",
        "1.2.3-01",
        "1.2.3-a..b",
        "1.2.3+",
        "1.2.3+a+b",
        "1.2.3_b",
        "1.2+b.3",
    ],
)
def test_strict_rejects(text: str) -> None:
    with pytest.raises(InvalidVersion):
        parse_strict_version(text)


@pytest.mark.parametrize(
    ("constraint", "version", "check"),
    [
        # v3.4: one prerelease comparator opens the whole AND group to prereleases.
        (">=1.0.0-0 <2.0.0", "1.5.0-rc.1", True),
        (">=1.2.0-alpha <1.3.0", "1.3.0-alpha", True),
        (">=1.0.0-0 <2.0.0 || >=3", "3.1.0-rc.1", False),
        (">=1.0.0", "1.5.0-rc.1", False),
        ("*", "1.0.0-rc.1", False),
        ("~*", "9.9.9", True),
        ("^0.0", "0.0.9", True),
        ("^0.0", "0.1.0", False),
        ("!=1.x", "1.9.9", False),
        ("!=1.x", "2.0.0", True),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        (">1.1", "1.1.9", False),
        (">1.1", "1.2.0", True),
        ("<=1.1", "1.1.9", True),
        ("v1.2.3", "1.2.3+anything", True),
    ],
)
def test_documented_rules(constraint: str, version: str, check: bool) -> None:
    assert Constraints(constraint).check(parse_version(version)) is check


@pytest.mark.parametrize(
    "constraint", ["", "   ", ">=", "1.2.3.4", "foo", ">= 1 ||", "1|2", "a" * 5000]
)
def test_constraint_errors(constraint: str) -> None:
    with pytest.raises(InvalidConstraint):
        Constraints(constraint)


def _single_comparator_rows() -> list[Any]:
    rows = [
        row
        for row in CASES["constraint_check"]
        if row["constraint"] and not any(ch in row["constraint"].strip() for ch in " ,|")
    ]
    return [
        pytest.param(
            r["constraint"], r["version"], r["check"], id=f"{r['constraint']!r} | {r['version']!r}"
        )
        for r in rows
    ]


@pytest.mark.parametrize(("constraint", "version", "check"), _single_comparator_rows())
def test_single_comparator_agrees(constraint: str, version: str, check: bool) -> None:
    """The library checks one comparator alone the same way as a one-comparator range."""
    assert parse_comparator(constraint).check(parse_version(version)) is check


VERSIONISH = st.text(alphabet="0123456789.v-+abX", max_size=16)


@given(VERSIONISH)
@settings(max_examples=300, deadline=None)
def test_strict_is_loose_in_canonical_form(text: str) -> None:
    """StrictNewVersion accepts exactly what NewVersion accepts and prints back unchanged."""
    try:
        loose = parse_version(text)
    except InvalidVersion:
        loose = None
    canonical = loose is not None and str(loose) == text
    try:
        strict = parse_strict_version(text)
    except InvalidVersion:
        assert not canonical
    else:
        assert canonical
        assert loose is not None and strict.key == loose.key


@given(VERSIONISH)
@settings(max_examples=300, deadline=None)
def test_v_prefix_is_one_lowercase_v(text: str) -> None:
    """fluxcd/pkg ParseVersion before v0.8 (Flux 2.6): strict once a single leading v is removed."""
    bare = text[1:] if text.startswith("v") else text
    try:
        parse_strict_version(bare)
        expected = True
    except InvalidVersion:
        expected = False
    try:
        parsed = parse_strict_version(text, v_prefix=True)
    except InvalidVersion:
        assert not expected
    else:
        assert expected and parsed.original == text


# Masterminds v3.5 limits (version.go MaxVersionLen, constraints.go MaxConstraintLen and
# MaxConstraintGroups), as source-controller v1.9 links them.


def test_versions_are_at_most_256_bytes() -> None:
    longest = "1.2.3-" + "a" * 250
    assert parse_version(longest).prerelease == "a" * 250
    assert strict_version_or_none(longest) is not None
    with pytest.raises(InvalidVersion, match="too long"):
        parse_version(longest + "a")
    assert strict_version_or_none(longest + "a") is None
    assert flux_version_or_none(longest + "a") is None


def test_ranges_are_at_most_512_bytes_and_32_groups() -> None:
    assert Constraints(">=1.0.0 " * 64).text  # 512 bytes
    with pytest.raises(InvalidConstraint, match="too long"):
        Constraints(">=1.0.0 " * 64 + "1")
    with pytest.raises(InvalidConstraint, match="too long"):
        Constraints("é" * 257)  # counted in bytes, as Go's len()
    assert Constraints(" || ".join(["1"] * 32)).check(parse_version("1.5.0"))
    with pytest.raises(InvalidConstraint, match="too many"):
        Constraints(" || ".join(["1"] * 33))
    with pytest.raises(InvalidConstraint):
        Constraints("1.2.3-" + "a" * 251)  # a version over 256 bytes inside a range


# fluxcd/pkg/version ParseVersion since v0.8 (Flux 2.7, source-controller v1.7): two dots,
# then NewVersion.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025.02.03", (2025, 2, 3, "", "")),
        ("v01.007.02", (1, 7, 2, "", "")),
        ("1.2-beta.5", (1, 2, 0, "beta.5", "")),
        ("12.02+build.1", (12, 2, 0, "", "build.1")),
        ("v12-beta.0abc.0abc", (12, 0, 0, "beta.0abc.0abc", "")),
        ("1-a.b.c", (1, 0, 0, "a.b.c", "")),
        ("1-a.b+c", None),  # one dot
        ("1.2.3", (1, 2, 3, "", "")),
        ("1.2", None),
        ("v1", None),
        ("1.2+b", None),
        ("1.2.3.4", None),
        ("1..3", None),
        ("1.2.3-01", None),
        ("1.2.3_b", None),
        ("V1.2.3", None),
    ],
)
def test_flux_parse_version(text: str, expected: tuple[int, int, int, str, str] | None) -> None:
    v = flux_version_or_none(text)
    assert (None if v is None else (v.major, v.minor, v.patch, v.prerelease, v.metadata)) == (
        expected
    )
    if v is not None:
        assert v.original == text


@given(VERSIONISH)
@settings(max_examples=300, deadline=None)
def test_flux_2_7_reads_every_tag_flux_2_6_read(text: str) -> None:
    """The new rule only adds versions; a tag both read is the same version."""
    before = strict_version_or_none(text, v_prefix=True)
    after = flux_version_or_none(text)
    if before is not None:
        assert after is not None and after.key == before.key and after.original == text
    if after is not None:
        assert text.count(".") >= 2 and after.key == parse_version(text).key
