"""Semantic versions with the exact behaviour of Masterminds/semver v3.5.

Flux picks tags with the Go library Masterminds/semver, whose rules differ from
the semver 2.0 spec and from npm in small ways that decide which tag wins: the
loose parser accepts ``v1``, ``1.2`` and leading zeros, and prerelease identifiers
order numbers below text. Reimplementing those rules here, checked against the
library's own test tables and against the library itself
(``tests/flux/test_flux_parity.py``), is what lets the exporter predict Flux's choice
instead of approximating it. Ranges over these
versions live in ``exporter.flux.constraints``.

Flux reads a tag with fluxcd/pkg ``version.ParseVersion``, whose rule changed with
Flux 2.7: :func:`flux_version_or_none` is the current one, :func:`strict_version_or_none`
with ``v_prefix`` the one of Flux 2.6 and earlier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_UINT64_MAX = 2**64 - 1
_UINT64_DIGITS = 19  # shorter digit strings always fit
MAX_VERSION_LEN = 256
"""Masterminds v3.5 ``MaxVersionLen``: both parsers refuse longer text (in bytes, but only
ASCII text can parse, so characters count the same)."""

# NewVersion (coercing mode, the default since v3.4): optional lowercase `v`, one to
# three numeric parts (leading zeros allowed), optional prerelease and build.
_LOOSE = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
# StrictNewVersion: exactly three parts without leading zeros; numeric
# prerelease identifiers without leading zeros; non-empty identifiers.
_NUM = r"(0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_STRICT_BODY = (
    rf"{_NUM}\.{_NUM}\.{_NUM}"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_STRICT = re.compile(_STRICT_BODY)
_STRICT_V = re.compile("v?" + _STRICT_BODY)

PreKey = tuple[tuple[int, int | str], ...]
VersionKey = tuple[int, int, int, int, PreKey]


class InvalidVersion(ValueError):
    """The text is not a version under the parser that was asked."""


def prerelease_key(pre: str) -> PreKey:
    """Order prerelease identifiers as Masterminds does.

    Numbers (what Go's ParseUint accepts) sort numerically and below any text;
    text sorts bytewise; a shorter list that is a prefix of a longer one sorts first.
    """
    if not pre:
        return ()
    parts: list[tuple[int, int | str]] = []
    for ident in pre.split("."):
        if ident.isascii() and ident.isdigit() and int(ident) <= _UINT64_MAX:
            parts.append((0, int(ident)))
        else:
            parts.append((1, ident))
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Version:
    """One parsed version; ``original`` is the text it was parsed from.

    Ordering follows semver 2.0 precedence (build metadata ignored) through
    :meth:`compare` and :attr:`key`; ``==`` compares every field, ``original`` included.
    """

    major: int
    minor: int
    patch: int
    prerelease: str = ""
    metadata: str = ""
    original: str = ""
    key: VersionKey = field(init=False, repr=False, compare=False)
    """A sort key: equal keys exactly when :meth:`compare` returns 0."""

    def __post_init__(self) -> None:
        pre = self.prerelease
        key = (
            (self.major, self.minor, self.patch, 0, prerelease_key(pre))
            if pre
            else (self.major, self.minor, self.patch, 1, ())
        )
        object.__setattr__(self, "key", key)

    def compare(self, other: Version) -> int:
        """-1, 0 or 1 as this version has lower, equal or higher precedence."""
        a, b = self.key, other.key
        return (a > b) - (a < b)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += f"-{self.prerelease}"
        if self.metadata:
            text += f"+{self.metadata}"
        return text


def _check_prerelease(pre: str, text: str) -> None:
    for ident in pre.split("."):
        if ident.isdigit() and len(ident) > 1 and ident[0] == "0":
            raise InvalidVersion(f"numeric prerelease identifier with a leading zero in {text!r}")


def _uint64(digits: str, text: str) -> int:
    value = int(digits)
    if value > _UINT64_MAX:
        raise InvalidVersion(f"numeric part out of range in {text!r}")
    return value


def parse_version(text: str) -> Version:
    """Masterminds ``NewVersion``: the loose parser (``v1``, ``1.2``, ``01.2.3`` accepted)."""
    if len(text) > MAX_VERSION_LEN:
        raise InvalidVersion(f"version string is too long (max {MAX_VERSION_LEN} bytes)")
    m = _LOOSE.fullmatch(text)
    if m is None:
        raise InvalidVersion(f"invalid semantic version {text!r}")
    major, minor, patch, pre, meta = m.groups()
    if pre:
        _check_prerelease(pre, text)
    return Version(
        major=_uint64(major, text),
        minor=_uint64(minor, text) if minor else 0,
        patch=_uint64(patch, text) if patch else 0,
        prerelease=pre or "",
        metadata=meta or "",
        original=text,
    )


def version_or_none(text: str) -> Version | None:
    """:func:`parse_version` returning None instead of raising."""
    try:
        return parse_version(text)
    except InvalidVersion:
        return None


def flux_version_or_none(text: str) -> Version | None:
    """fluxcd/pkg ``version.ParseVersion`` since v0.8 (Flux 2.7, source-controller v1.7).

    ``strings.SplitN(text, ".", 3)`` must give three parts, that is the text holds two
    dots somewhere; then Masterminds' loose ``NewVersion``. So ``2025.02.03`` (2025.2.3),
    ``v01.007.02``, ``1.2-beta.5`` (1.2.0-beta.5) and ``12.02+build.1`` (12.2.0+build.1)
    are versions; ``1.2``, ``v1`` and ``1.2.3.4`` are not. None when it is not a version.
    """
    if text.count(".") < 2:
        return None
    return version_or_none(text)


def parse_strict_version(text: str, *, v_prefix: bool = False) -> Version:
    """Masterminds ``StrictNewVersion``: semver 2.0 only, no leading zeros.

    With ``v_prefix`` one leading ``v`` is also accepted, which is fluxcd/pkg
    ``version.ParseVersion`` before v0.8 (Flux 2.6 and earlier): the strict check
    without the ``v``, then ``NewVersion``.
    """
    version = strict_version_or_none(text, v_prefix=v_prefix)
    if version is None:
        raise InvalidVersion(f"not a strict semantic version: {text!r}")
    return version


def strict_version_or_none(text: str, *, v_prefix: bool = False) -> Version | None:
    """:func:`parse_strict_version` returning None instead of raising (the hot path)."""
    if len(text) > MAX_VERSION_LEN:
        return None
    m = (_STRICT_V if v_prefix else _STRICT).fullmatch(text)
    if m is None:
        return None
    major, minor, patch, pre, meta = m.groups()
    if max(len(major), len(minor), len(patch)) > _UINT64_DIGITS and (
        max(int(major), int(minor), int(patch)) > _UINT64_MAX
    ):
        return None
    return Version(int(major), int(minor), int(patch), pre or "", meta or "", text)
