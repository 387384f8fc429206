from __future__ import annotations

import contextlib
import re

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
        ("1.", 1),
        (".5", 0.5),
        ("1µs", 1e-6),
        ("1μs", 1e-6),
        ("2562047h47m16.854775807s", 9223372036.854775807),  # Go's longest duration
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "-5s", "-5", "+5", "+5s", "-0s", "5x", "1h30", "h", ".s", "1..5s", "5 m", "inf", "nan",
     "1_000", "1e400", "1e308", "1E3s",
     "\u0661\u0662", "\u0661\u0662s", "\uff15", "\uff15m", "1\u066b5h",  # not Go's digits
     " 10s ", "10s\n", "\t5m", "5m\u00a0",  # surrounding whitespace
     "2562047h47m16.854775808s", "9223372036854775808ns", "106752d", "9" * 5000 + "h",
     "\ud800", "5\ud800"],
)  # fmt: skip
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
            "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
GO_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def go_parse_duration(s: str) -> int | None:
    """Go's time.ParseDuration (src/time/format.go) in nanoseconds; None where Go errs."""
    negative = s[:1] == "-"
    s = s[1:] if s[:1] in ("-", "+") else s
    if s == "0":
        return 0
    if not s:
        return None
    total, pos = 0, 0
    while pos < len(s):
        term = GO_TERM.match(s, pos)
        assert term is not None  # every part is optional
        whole, fraction, unit = term.groups()
        pos = term.end()
        if not whole and not fraction:  # "no digits (e.g. '.s' or '-.s')"
            return None
        if unit not in GO_UNITS or len(whole.lstrip("0")) > 19 or int(whole or 0) > 2**63:
            return None  # missing or unknown unit, leadingInt overflow
        scale = GO_UNITS[unit]
        if int(whole or 0) > 2**63 // scale:
            return None
        value = int(whole or 0) * scale
        f, divisor = 0, 1.0  # leadingFraction: digits while they fit, in float64 after
        for digit in fraction or "":
            if f > (2**63 - 1) // 10 or f * 10 + int(digit) > 2**63:
                break
            f, divisor = f * 10 + int(digit), divisor * 10
        value += int(float(f) * (float(scale) / divisor))
        total += value
        if value > 2**63 or total > 2**63:
            return None
    if negative:
        return -total
    return total if total <= 2**63 - 1 else None


S, MIN = 10**9, 60 * 10**9


@pytest.mark.parametrize(
    ("text", "ns"),
    [("0", 0), ("5s", 5 * S), ("-5s", -5 * S), ("+5s", 5 * S), ("-0", 0), ("+0", 0),
     ("5.s", 5 * S), (".5s", S // 2), ("1.004s", 1_004_000_000),
     ("-2m3.4s", -(2 * MIN + 3_400_000_000)), ("1h2m3s4ms5us6ns", 3_723_004_005_006),
     ("0.3333333333333333333h", 20 * MIN), ("9007199254740993ns", 2**53 + 1),
     ("9223372036854775807ns", 2**63 - 1), ("9223372036s854ms775us807ns", 2**63 - 1),
     ("-9223372036854775808ns", -(2**63)), ("-2562047h47m16.854775808s", -(2**63)),
     ("0.100000000000000000000h", 6 * MIN),
     ("0.830103483285477580700h", 49 * MIN + 48 * S + 372_539_827),
     ("", None), ("3", None), ("-", None), ("s", None), (".", None), ("-.", None), (".s", None),
     ("+.s", None), ("1d", None), ("\x85\x85", None), ("9223372036854775810ns", None),
     ("9223372036854775808ns", None), ("9223372036854776us", None), ("3000000h", None),
     ("9223372036854775.808us", None), ("9223372036854ms775us808ns", None)],
)  # fmt: skip
def test_the_go_reference_itself(text: str, ns: int | None) -> None:
    """Cases of Go's own ParseDuration tests (src/time/time_test.go)."""
    assert go_parse_duration(text) == ns
    if ns is not None and text[:1] not in ("-", "+"):
        assert parse_duration(text) == ns / 1e9


def expected_seconds(text: str) -> float | None:
    """Go's answer, with this project's two deviations: no sign, plain numbers are seconds."""
    if text[:1] in ("-", "+"):
        return None
    if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text):
        text += "s"
    ns = go_parse_duration(text)
    return None if ns is None else ns / 1e9


def go_like_text() -> st.SearchStrategy[str]:
    """Near-misses: the grammar's characters mixed with look-alikes and whitespace."""
    alphabet = [*"0123456789.+-hmsnuµμ", "e", " ", "\n", "\t", "\u0661", "\uff15", "_", "\ud800"]
    return st.text(st.sampled_from(alphabet), max_size=24)


def go_durations() -> st.SearchStrategy[str]:
    """Well-formed Go durations, large enough to reach the overflow boundary."""
    term = st.tuples(
        st.integers(0, 10**21).map(str) | st.just(""),
        st.none() | st.text(st.sampled_from("0123456789"), max_size=25),
        st.sampled_from(sorted(GO_UNITS)),
    ).map(lambda t: t[0] + ("" if t[1] is None else "." + t[1]) + t[2])
    return st.lists(term, min_size=1, max_size=4).map("".join)


@given(go_like_text() | go_durations() | st.text(st.characters() | st.sampled_from("\ud800\udfff")))
def test_durations_agree_with_go(text: str) -> None:
    want = expected_seconds(text)
    try:
        got: float | None = parse_duration(text)
    except ValueError:
        got = None
    assert got == want


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
