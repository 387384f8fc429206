from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.flux.revision import (
    AppliedRevision,
    RevisionProblem,
    chart_version_key,
    format_oci_revision,
    parse_chart_revision,
    parse_oci_revision,
)

HEX = "3b6cdcc7adcc9a84d3214ee1c029543789d90b5ae69debe9efa3f66e982875de"
DIGEST = f"sha256:{HEX}"

tags = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
digests = st.one_of(
    st.from_regex(r"\A[a-f0-9]{64}\Z").map(lambda h: f"sha256:{h}"),
    st.from_regex(r"\A[a-f0-9]{128}\Z").map(lambda h: f"sha512:{h}"),
)


@pytest.mark.parametrize(
    ("raw", "tag", "digest"),
    [
        (f"latest@{DIGEST}", "latest", DIGEST),
        (f"v1.2.3@{DIGEST}", "v1.2.3", DIGEST),
        (f"6.0.1_build.7@{DIGEST}", "6.0.1_build.7", DIGEST),
        (DIGEST, None, DIGEST),
        (f"latest/{HEX}", "latest", DIGEST),  # Flux <= 0.39
        (f"v1.0.0/{HEX}", "v1.0.0", DIGEST),
    ],
)
def test_oci_revisions(raw: str, tag: str | None, digest: str) -> None:
    assert parse_oci_revision(raw) == AppliedRevision(tag, digest, None, raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "latest",
        "latest@",
        f"latest@sha256:{HEX[:-1]}",
        f"latest@sha256:{HEX.upper()}",
        f"latest@md5:{HEX}",
        f"la@test@{DIGEST}",
        f".hidden@{DIGEST}",
        f"{'a' * 129}@{DIGEST}",
        f"main/{HEX[:40]}",  # a GitRepository revision, not ours
        f"sha1:{HEX[:40]}",
        f"a/b/{HEX}",
    ],
)
def test_unreadable_oci_revisions(raw: str) -> None:
    result = parse_oci_revision(raw)
    assert isinstance(result, RevisionProblem)
    assert result.raw == raw and result.reason


@given(tags, digests)
def test_oci_round_trip(tag: str, digest: str) -> None:
    parsed = parse_oci_revision(format_oci_revision(tag, digest))
    assert parsed == AppliedRevision(tag, digest, None, f"{tag}@{digest}")


@given(digests)
def test_digest_only_round_trip(digest: str) -> None:
    assert parse_oci_revision(format_oci_revision(None, digest)) == AppliedRevision(
        None, digest, None, digest
    )


@given(st.text(max_size=300))
def test_oci_parse_never_raises(raw: str) -> None:
    result = parse_oci_revision(raw)
    if isinstance(result, RevisionProblem):
        assert len(result.reason) < 200


def test_format_needs_something() -> None:
    with pytest.raises(ValueError):
        format_oci_revision(None, None)
    assert format_oci_revision("v1", None) == "v1"


@pytest.mark.parametrize(
    ("raw", "values_files", "version"),
    [
        ("1.2.3", False, "1.2.3"),
        ("1.2.3-rc.1", False, "1.2.3-rc.1"),
        ("1.2.3+abc", False, "1.2.3+abc"),  # the chart's own build metadata
        ("1.2.3+7", False, "1.2.3+7"),
        ("1.2.3+7", True, "1.2.3"),  # +<generation> from valuesFiles
        ("1.2.3-rc.1+12", True, "1.2.3-rc.1"),
    ],
)
def test_chart_revisions(raw: str, values_files: bool, version: str) -> None:
    result = parse_chart_revision(raw, has_values_files=values_files)
    assert result == AppliedRevision(None, None, version, raw)


@pytest.mark.parametrize(
    ("raw", "values_files"),
    [("", False), ("1.2", False), ("latest", False), ("1.2.3", True), ("1.2.3+abc", True)],
)
def test_unreadable_chart_revisions(raw: str, values_files: bool) -> None:
    assert isinstance(parse_chart_revision(raw, has_values_files=values_files), RevisionProblem)


versions = st.tuples(
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 999),
    st.one_of(st.none(), st.from_regex(r"\A[0-9A-Za-z-]{1,8}(\.[0-9A-Za-z-]{1,8}){0,2}\Z")),
    st.one_of(st.none(), st.from_regex(r"\A[0-9A-Za-z-]{1,8}\Z")),
).map(
    lambda v: f"{v[0]}.{v[1]}.{v[2]}" + (f"-{v[3]}" if v[3] else "") + (f"+{v[4]}" if v[4] else "")
)


@given(versions, st.integers(1, 10**9))
def test_chart_round_trip_with_values_files(version: str, generation: int) -> None:
    """What Flux writes with valuesFiles reads back as the version without build metadata."""
    raw = f"{chart_version_key(version, has_values_files=True)}+{generation}"
    result = parse_chart_revision(raw, has_values_files=True)
    assert isinstance(result, AppliedRevision)
    assert result.chart_version == chart_version_key(version, has_values_files=True)


@given(versions)
def test_chart_round_trip_without_values_files(version: str) -> None:
    result = parse_chart_revision(version, has_values_files=False)
    assert result == AppliedRevision(None, None, version, version)
