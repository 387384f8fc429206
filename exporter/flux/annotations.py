"""The per-object annotations: the exporter's public, versioned API.

Users opt an object in and tune it with annotations under one prefix (default
``oci-trigger.gitlab.com/``, configurable). A typo must not silently change
behaviour, so every key under the prefix is checked and **every** problem is
reported at once, the way a user wants to read them in one Event:

``enabled``
    ``"true"`` opts the object in, ``"false"`` opts it out; anything else is a problem.
``tag-pattern``
    An RE2 regular expression, searched unanchored (like Flux's ``semverFilter``; write
    ``^…$`` to anchor) in the version Flux reports: the tag of an OCIRepository, the chart
    version of a HelmChart. It only holds reconcile requests back; it never changes which
    artifact Flux applies, nor the lag reported.
``min-age``
    A duration: a new artifact must be this old before a request is made. Default 0.
``interval``
    A duration: how often the registry is checked for this object. Values below the
    global minimum are raised to it, with a warning (the object keeps working).
``requested-revision``
    Bookkeeping written by the exporter itself (the revision it last requested); accepted,
    never validated.

Durations are Go's (``90s``, ``5m``, ``1h30m``, ``1.5h``, ``250ms``; what Go's
``time.ParseDuration`` accepts, so no exponent, no whitespace, ASCII digits only, at most
about 292 years) or a plain number of seconds (``90``, ``2.5``); never signed.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2

DEFAULT_PREFIX = "oci-trigger.gitlab.com/"

ENABLED = "enabled"
TAG_PATTERN = "tag-pattern"
MIN_AGE = "min-age"
INTERVAL = "interval"
REQUESTED_REVISION = "requested-revision"

KNOWN_KEYS: tuple[str, ...] = (ENABLED, INTERVAL, MIN_AGE, TAG_PATTERN)
_BOOKKEEPING_KEYS = frozenset({REQUESTED_REVISION})

_MAX_SHOWN = 64
_NS_PER_UNIT: dict[str, int] = {  # Go's time.ParseDuration units
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = 2**63 - 1  # Go's longest Duration, about 292 years
_DIGITS = frozenset("0123456789")  # ASCII only: str.isdigit() takes Arabic-Indic digits too
_PLAIN_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def shown(value: str) -> str:
    """A value quoted for a message, cut to a bounded length."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "…"
    return repr(value)


def parse_duration(text: str) -> float:
    """Seconds from a Go duration (``1h30m``, ``1.5h``, ``250ms``), read exactly as Go's
    ``time.ParseDuration`` reads it, or from a plain number of seconds (``90``, ``2.5``).

    Raises ValueError on what Go refuses (other digits than ASCII, exponents, whitespace,
    more than Go's longest duration of about 292 years) and, unlike Go, on any sign.
    """
    if not text:
        raise ValueError("empty duration")
    if text.strip() != text:
        raise ValueError(f"invalid duration {shown(text)}: surrounding whitespace")
    if text[0] in "+-":
        raise ValueError(f"invalid duration {shown(text)}: no sign allowed (never negative)")
    go = text + "s" if _PLAIN_SECONDS.fullmatch(text) else text
    return _nanoseconds(go, text) / 1e9


def _nanoseconds(go: str, text: str) -> int:
    """Go's ``ParseDuration`` loop without the sign: ``([0-9]*([.][0-9]*)?unit)+``."""
    total = 0
    i = 0
    while i < len(go):
        start = i
        while i < len(go) and go[i] in _DIGITS:
            i += 1
        has_whole = i > start
        whole = go[start:i].lstrip("0")
        fraction = ""
        if i < len(go) and go[i] == ".":
            start = i = i + 1
            while i < len(go) and go[i] in _DIGITS:
                i += 1
            fraction = go[start:i]
        if not has_whole and not fraction:
            raise ValueError(f"invalid duration {shown(text)}: expected e.g. 90s, 5m, 1h30m")
        start = i
        while i < len(go) and go[i] != "." and go[i] not in _DIGITS:
            i += 1
        unit = go[start:i]
        if not unit:
            raise ValueError(f"invalid duration {shown(text)}: missing unit (h, m, s, ms, us, ns)")
        if unit not in _NS_PER_UNIT:
            raise ValueError(
                f"invalid duration {shown(text)}: unknown unit {shown(unit)} "
                "(use h, m, s, ms, us or ns)"
            )
        scale = _NS_PER_UNIT[unit]
        value = int(whole or "0") if len(whole) <= 19 else 2**64  # Go: leadingInt overflows
        if value > 2**63 // scale:
            raise ValueError(_too_long(text))
        value *= scale
        if fraction:
            digits, divisor = _leading_fraction(fraction)
            value += int(float(digits) * (float(scale) / divisor))  # as Go, in float64
        total += value
        if total > 2**63:
            raise ValueError(_too_long(text))
    if total > _MAX_NS:
        raise ValueError(_too_long(text))
    return total


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's ``leadingFraction``: the digits that fit in an int64, and 10 to their count."""
    value, divisor = 0, 1.0
    for digit in digits:
        if value > _MAX_NS // 10 or value * 10 + int(digit) > 2**63:
            break
        value = value * 10 + int(digit)
        divisor *= 10
    return value, divisor


def _too_long(text: str) -> str:
    return f"invalid duration {shown(text)}: longer than Go's longest (about 292 years)"


def _quiet_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the problem is reported to the user, not to stderr
    return options


_RE2_OPTIONS = _quiet_options()


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _regex_error(exc: Exception) -> str:
    """RE2's error kind (``missing )``) without the echoed pattern, which may be long."""
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail).split(": ", 1)[0] or "invalid regular expression"


def pattern_allows(pattern: str | None, version: str) -> bool:
    """Whether ``tag-pattern`` lets a request for ``version`` through (no pattern: yes)."""
    if pattern is None:
        return True
    return _compiled(pattern).search(version) is not None


@dataclass(frozen=True)
class Options:
    """What an object asked for. Durations in seconds."""

    interval: float
    min_age: float = 0.0
    tag_pattern: str | None = None


@dataclass(frozen=True)
class OptionsResult:
    """Either ``options`` (possibly with ``warnings``) or every ``problems`` found."""

    options: Options | None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def opted_in(annotations: Mapping[str, str], prefix: str) -> bool:
    """Whether the object opted in: ``<prefix>enabled`` is exactly ``"true"``."""
    return annotations.get(prefix + ENABLED) == "true"


def opted_out(annotations: Mapping[str, str], prefix: str) -> bool:
    """Whether the object explicitly opted out: ``<prefix>enabled`` is exactly ``"false"``."""
    return annotations.get(prefix + ENABLED) == "false"


def parse_options(
    annotations: Mapping[str, str],
    prefix: str,
    *,
    min_interval: float,
    default_interval: float,
) -> OptionsResult:
    """Read the options under ``prefix``; report every problem, naming key and value."""
    problems: list[str] = []
    warnings: list[str] = []
    interval = max(default_interval, min_interval)
    min_age = 0.0
    tag_pattern: str | None = None

    for key in sorted(annotations):
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name in KNOWN_KEYS or name in _BOOKKEEPING_KEYS:
            continue
        close = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"known: {', '.join(KNOWN_KEYS)}"
        problems.append(f"unknown annotation {shown(key)} ({hint})")

    value = annotations.get(prefix + ENABLED)
    if value is not None and value not in ("true", "false"):
        problems.append(f'{prefix}{ENABLED}: {shown(value)} is neither "true" nor "false"')

    value = annotations.get(prefix + TAG_PATTERN)
    if value is not None:
        try:
            _compiled(value)
        except re2.error as exc:
            problems.append(
                f"{prefix}{TAG_PATTERN}: {shown(value)} is not an RE2 regex: {_regex_error(exc)}"
            )
        else:
            tag_pattern = value

    value = annotations.get(prefix + MIN_AGE)
    if value is not None:
        try:
            min_age = parse_duration(value)
        except ValueError as exc:
            problems.append(f"{prefix}{MIN_AGE}: {exc}")

    value = annotations.get(prefix + INTERVAL)
    if value is not None:
        try:
            interval = parse_duration(value)
        except ValueError as exc:
            problems.append(f"{prefix}{INTERVAL}: {exc}")
        else:
            if interval < min_interval:
                warnings.append(
                    f"{prefix}{INTERVAL}: {shown(value)} is below the minimum of "
                    f"{min_interval:g}s; using {min_interval:g}s"
                )
                interval = min_interval

    if problems:
        return OptionsResult(options=None, problems=tuple(problems))
    options = Options(interval=interval, min_age=min_age, tag_pattern=tag_pattern)
    return OptionsResult(options=options, warnings=tuple(warnings))
