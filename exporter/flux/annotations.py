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

Durations are Go-style (``90s``, ``5m``, ``1h30m``, ``1.5h``, ``250ms``) or a plain number
of seconds (``90``, ``2.5``); never negative.
"""

from __future__ import annotations

import difflib
import functools
import math
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
_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def shown(value: str) -> str:
    """A value quoted for a message, cut to a bounded length."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "…"
    return repr(value)


def parse_duration(text: str) -> float:
    """Seconds from a Go-style duration (``1h30m``) or a plain number of seconds.

    Raises ValueError on anything else, on negative values and on non-finite numbers.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        plain = float(s) if "_" not in s else math.nan
    except ValueError:
        pass
    else:
        if not math.isfinite(plain) or plain < 0 or s.lower().startswith(("+", "inf", "nan")):
            raise ValueError(f"invalid duration {shown(text)}")
        return plain
    total = 0.0
    i = 0
    while i < len(s):
        start = i
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        number = s[start:i]
        unit_start = i
        while i < len(s) and not (s[i].isdigit() or s[i] == "."):
            i += 1
        unit = s[unit_start:i]
        if not number.isascii() or number.count(".") > 1 or number.strip(".") == "":
            raise ValueError(f"invalid duration {shown(text)}: expected e.g. 90s, 5m, 1h30m")
        if unit not in _UNITS:
            raise ValueError(
                f"invalid duration {shown(text)}: unknown unit {shown(unit)} "
                "(use h, m, s, ms, us or ns)"
            )
        total += float(number) * _UNITS[unit]
    if not math.isfinite(total):
        raise ValueError(f"invalid duration {shown(text)}")
    return total


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
