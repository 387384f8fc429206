"""Semantic versions and ranges with the exact behaviour of Masterminds/semver v3.4.

Flux picks tags with the Go library Masterminds/semver, whose rules differ from
the semver 2.0 spec and from npm in small ways that decide which tag wins: the
loose parser accepts ``v1``, ``1.2`` and leading zeros; ``1.2`` in a range means
``1.2.x``; ``^0.0`` and ``!=1.x`` have their own readings; and a prerelease
version passes an AND group only when some comparator of that group carries a
prerelease (``>=1.0.0-0 <2`` admits ``1.5.0-rc.1``). Reimplementing those rules
here, checked against the library's own test tables, is what lets the exporter
predict Flux's choice instead of approximating it.

The range grammar is matched with RE2, the engine family of Go's ``regexp``: the
same leftmost-first submatch semantics, ASCII-only ``\\s`` and linear time, so a
hostile range in an annotation cannot make the parser backtrack for ever.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import re2

_UINT64_MAX = 2**64 - 1
_UINT64_DIGITS = 19  # shorter digit strings always fit

# NewVersion (coercing mode, the v3.4 default): optional lowercase `v`, one to
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


class InvalidConstraint(ValueError):
    """The text is not a Masterminds version range."""


def _prerelease_key(pre: str) -> PreKey:
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
            (self.major, self.minor, self.patch, 0, _prerelease_key(pre))
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


def parse_strict_version(text: str, *, v_prefix: bool = False) -> Version:
    """Masterminds ``StrictNewVersion``: semver 2.0 only, no leading zeros.

    With ``v_prefix`` one leading ``v`` is also accepted, which is fluxcd/pkg
    ``version.ParseVersion`` (strict check without the ``v``, then ``NewVersion``).
    """
    version = strict_version_or_none(text, v_prefix=v_prefix)
    if version is None:
        raise InvalidVersion(f"not a strict semantic version: {text!r}")
    return version


def strict_version_or_none(text: str, *, v_prefix: bool = False) -> Version | None:
    """:func:`parse_strict_version` returning None instead of raising (the hot path)."""
    m = (_STRICT_V if v_prefix else _STRICT).fullmatch(text)
    if m is None:
        return None
    major, minor, patch, pre, meta = m.groups()
    if max(len(major), len(minor), len(patch)) > _UINT64_DIGITS and (
        max(int(major), int(minor), int(patch)) > _UINT64_MAX
    ):
        return None
    return Version(int(major), int(minor), int(patch), pre or "", meta or "", text)


# --- ranges ---------------------------------------------------------------

# Go's character class [0-9|x|X|\*] also admits "|": kept, since it decides
# whether some malformed ranges fail at parse time or later.
_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"  # the empty alternative means "=" or "~"
_ONE = re2.compile(rf"\s*({_OPS})\s*({_CV})\s*")
_HYPHEN = re2.compile(rf"\s*({_CV})\s+-\s+({_CV})\s*")
_FIND = re2.compile(rf"({_OPS})\s*({_CV})")
_GROUP = re2.compile(rf"(\s*({_OPS})\s*({_CV})\s*)((?:\s+|,\s*)({_OPS})\s*({_CV})\s*)*")
_HYPHEN_SECOND = 11  # group index of the upper bound in _HYPHEN


@dataclass(frozen=True, slots=True)
class Comparator:
    """One operator and version of a range, such as ``>=1.2`` or ``~1.x``."""

    op: str
    con: Version
    dirty: bool  # an x/X/* or a missing part somewhere
    minor_dirty: bool  # "1", "1.x": the minor is a wildcard
    patch_dirty: bool  # "1.2", "1.2.x": the patch is a wildcard

    def check(self, version: Version, include_prerelease: bool | None = None) -> bool:
        """Whether ``version`` passes this comparator alone.

        A prerelease version passes only when ``include_prerelease`` is true; by
        default that is whether this comparator itself names a prerelease.
        """
        if include_prerelease is None:
            include_prerelease = bool(self.con.prerelease)
        if version.prerelease and not include_prerelease:
            return False
        return _CHECKS[self.op](version, self)


def _is_x(part: str) -> bool:
    return part in ("x", "X", "*")


def parse_comparator(text: str) -> Comparator:
    """Masterminds ``parseConstraint``: one comparator; the empty string means ``*``."""
    if not text:
        return Comparator("", Version(0, 0, 0, original="0.0.0"), True, False, False)
    m = _ONE.fullmatch(text)
    if m is None:
        raise InvalidConstraint(f"improper constraint: {text}")
    op = m.group(1) or ""
    major, minor, patch = (m.group(i) or "" for i in (3, 4, 5))
    pre = m.group(6) or ""
    base = m.group(2) or ""
    dirty = minor_dirty = patch_dirty = False
    if _is_x(major):
        base, dirty = "0.0.0" + pre, True
    elif not minor or _is_x(minor[1:]):
        base, dirty, minor_dirty = f"{major}.0.0{pre}", True, True
    elif not patch or _is_x(patch[1:]):
        base, dirty, patch_dirty = f"{major}{minor}.0{pre}", True, True
    try:
        con = parse_version(base)
    except InvalidVersion as exc:
        raise InvalidConstraint(f"improper constraint: {text.strip()}") from exc
    return Comparator(op, con, dirty, minor_dirty, patch_dirty)


def _rewrite_hyphens(text: str) -> str:
    out = text
    for m in _HYPHEN.finditer(text):
        low, high = m.group(1), m.group(_HYPHEN_SECOND)
        out = out.replace(m.group(0), f">= {low}, <= {high} ", 1)
    return out


def _lt(v: Version, c: Version) -> bool:
    return v.key < c.key


def _not_equal(v: Version, c: Comparator) -> bool:
    con = c.con
    if c.dirty:
        if con.major != v.major:
            return True
        if con.minor != v.minor and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if con.patch != v.patch and not c.patch_dirty:
            return True
        if c.patch_dirty:
            if v.prerelease or con.prerelease:
                return _prerelease_key(v.prerelease) != _prerelease_key(con.prerelease)
            return False
    return v.key != con.key


def _greater(v: Version, c: Comparator) -> bool:
    con = c.con
    if c.dirty:
        if v.major != con.major:
            return v.major > con.major
        if c.minor_dirty:
            return False
        if c.patch_dirty:
            return v.minor > con.minor
    return v.key > con.key


def _less(v: Version, c: Comparator) -> bool:
    return v.key < c.con.key


def _greater_equal(v: Version, c: Comparator) -> bool:
    return v.key >= c.con.key


def _less_equal(v: Version, c: Comparator) -> bool:
    con = c.con
    if not c.dirty:
        return v.key <= con.key
    if v.major > con.major:
        return False
    return not (v.major == con.major and v.minor > con.minor and not c.minor_dirty)


def _tilde(v: Version, c: Comparator) -> bool:
    con = c.con
    if _lt(v, con):
        return False
    if (con.major, con.minor, con.patch) == (0, 0, 0) and not (c.minor_dirty or c.patch_dirty):
        return True  # ~0.0.0 and ~* accept everything at or above 0.0.0
    if v.major != con.major:
        return False
    return v.minor == con.minor or c.minor_dirty


def _tilde_or_equal(v: Version, c: Comparator) -> bool:
    return _tilde(v, c) if c.dirty else v.key == c.con.key


def _caret(v: Version, c: Comparator) -> bool:
    con = c.con
    if _lt(v, con):
        return False
    if con.major > 0 or c.minor_dirty:
        return v.major == con.major
    if v.major > 0:
        return False
    if con.minor > 0 or c.patch_dirty:
        return v.minor == con.minor
    if v.minor > 0:
        return False
    return v.patch == con.patch


_Check = Callable[[Version, Comparator], bool]
_Group = tuple[bool, tuple[tuple[_Check, Comparator], ...]]  # (admits prereleases, comparators)

_CHECKS: dict[str, _Check] = {
    "": _tilde_or_equal,
    "=": _tilde_or_equal,
    "!=": _not_equal,
    ">": _greater,
    "<": _less,
    ">=": _greater_equal,
    "=>": _greater_equal,
    "<=": _less_equal,
    "=<": _less_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


class Constraints:
    """A parsed range: OR (``||``) of AND groups (comma or space separated)."""

    __slots__ = ("_groups", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        groups: list[_Group] = []
        for part in _rewrite_hyphens(text).split("||"):
            if _GROUP.fullmatch(part) is None:
                raise InvalidConstraint(f"improper constraint: {part.strip()}")
            pieces = [m.group(0) for m in _FIND.finditer(part)] or [part]
            comparators = [parse_comparator(p) for p in pieces]
            admits_pre = any(c.con.prerelease for c in comparators)
            groups.append((admits_pre, tuple((_CHECKS[c.op], c) for c in comparators)))
        self._groups = tuple(groups)

    def check(self, version: Version) -> bool:
        """Masterminds ``Constraints.Check`` with ``IncludePrerelease`` unset, as Flux uses it."""
        is_pre = bool(version.prerelease)
        for admits_pre, comparators in self._groups:
            if is_pre and not admits_pre:
                continue
            for check, comparator in comparators:
                if not check(version, comparator):
                    break
            else:
                return True
        return False

    def __repr__(self) -> str:
        return f"Constraints({self.text!r})"
