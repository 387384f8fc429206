from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.flux.annotations import (
    DEFAULT_PREFIX,
    Options,
    OptionsResult,
    opted_in,
    parse_duration,
    parse_options,
    pattern_allows,
)

P = DEFAULT_PREFIX


def parse(annotations: dict[str, str], prefix: str = P) -> OptionsResult:
    return parse_options(annotations, prefix, min_interval=10, default_interval=60)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("2h", 7200),
        ("1.5h", 5400),
        ("250ms", 0.25),
        ("1m0.5s", 60.5),
        ("90", 90),
        ("2.5", 2.5),
        ("0", 0),
        ("0s", 0),
        (" 10s ", 10),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "-5s", "-5", "+5", "5x", "1h30", "h", "1..5s", "5 m", "inf", "nan", "1_000", "1e400"],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
    )
)
def test_go_durations_sum_their_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    factor = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    assert parse_duration(text) == pytest.approx(sum(n * factor[u] for n, u in parts))


@given(st.text(max_size=30))
def test_durations_fail_only_with_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


def test_defaults_when_only_enabled() -> None:
    result = parse({P + "enabled": "true", "other.io/x": "y"})
    assert result.options == Options(interval=60, min_age=0, tag_pattern=None)
    assert result.problems == () and result.warnings == ()


def test_every_option() -> None:
    result = parse(
        {
            P + "enabled": "true",
            P + "tag-pattern": r"^v1\.",
            P + "min-age": "5m",
            P + "interval": "30s",
            P + "requested-revision": "v1.0.0@sha256:" + "a" * 64,
        }
    )
    assert result.options == Options(interval=30, min_age=300, tag_pattern=r"^v1\.")


def test_every_problem_at_once() -> None:
    result = parse(
        {
            P + "enabled": "yes",
            P + "tag-pattern": "v1(",
            P + "min-age": "5 minutes",
            P + "interval": "-1m",
            P + "tag-patern": "x",
            P + "colour": "blue",
        }
    )
    assert result.options is None
    keys = ["enabled", "tag-pattern:", "min-age", "interval", "tag-patern", "colour"]
    assert len(result.problems) == len(keys)
    for key in keys:
        assert any(P + key in problem for problem in result.problems), key
    assert any("did you mean oci-trigger.gitlab.com/tag-pattern" in p for p in result.problems)
    assert any("'yes'" in p for p in result.problems)
    assert any("missing )" in p for p in result.problems)


def test_interval_below_minimum_is_raised_with_a_warning() -> None:
    result = parse({P + "interval": "1s"})
    assert result.options is not None and result.options.interval == 10
    assert len(result.warnings) == 1 and "interval" in result.warnings[0]


def test_default_interval_respects_minimum() -> None:
    result = parse_options({}, P, min_interval=120, default_interval=60)
    assert result.options is not None and result.options.interval == 120


def test_prefix_is_configurable() -> None:
    result = parse({"example.com/interval": "2m", P + "whatever": "x"}, prefix="example.com/")
    assert result.options is not None and result.options.interval == 120
    assert parse({"example.com/nope": "x"}, prefix="example.com/").problems


def test_long_values_are_cut_in_messages() -> None:
    huge = "x" * 10_000
    result = parse({P + "min-age": huge, P + "tag-pattern": "(" + huge, P + huge: "1"})
    assert len(result.problems) == 3
    assert all(len(p) < 400 for p in result.problems)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({P + "enabled": "true"}, True),
        ({P + "enabled": "True"}, False),
        ({P + "enabled": "false"}, False),
        ({}, False),
        ({"other/enabled": "true"}, False),
    ],
)
def test_opted_in(annotations: dict[str, str], expected: bool) -> None:
    assert opted_in(annotations, P) is expected


@pytest.mark.parametrize(
    ("pattern", "version", "allowed"),
    [
        (None, "anything", True),
        (r"^v1\.", "v1.2.3", True),
        (r"^v1\.", "v2.0.0", False),
        ("rc", "1.0.0-rc.1", True),  # unanchored, like semverFilter
        (r"^\d+\.\d+\.\d+$", "1.0.0-rc.1", False),
    ],
)
def test_pattern_allows(pattern: str | None, version: str, allowed: bool) -> None:
    assert pattern_allows(pattern, version) is allowed


@given(
    st.dictionaries(
        st.one_of(st.text(max_size=20), st.text(max_size=12).map(lambda s: P + s)),
        st.text(max_size=40),
        max_size=6,
    )
)
def test_any_annotations_give_options_or_problems(annotations: dict[str, str]) -> None:
    result = parse(annotations)
    assert (result.options is None) == bool(result.problems)
    assert all(len(p) < 400 for p in result.problems + result.warnings)
    if result.options is not None:
        assert result.options.interval >= 10 and result.options.min_age >= 0
