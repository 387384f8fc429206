"""Version ranges with the exact behaviour of Masterminds/semver v3.5 constraints.

``1.2`` in a range means ``1.2.x``; ``^0.0`` and ``!=1.x`` have their own readings;
hyphen ranges, ``||`` and comma or space AND groups parse as in Go; a prerelease
version passes an AND group only when some comparator of that group carries a
prerelease (``>=1.0.0-0 <2`` admits ``1.5.0-rc.1``); and a range is at most 512 bytes
and 32 ``||`` groups.

The range grammar is matched with RE2, the engine family of Go's ``regexp``: the
same leftmost-first submatch semantics, ASCII-only ``\\s`` and linear time, so a
hostile range in an annotation cannot make the parser backtrack for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import re2

from exporter.flux.semver import InvalidVersion, Version, parse_version, prerelease_key


class InvalidConstraint(ValueError):
    """The text is not a Masterminds version range."""


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
MAX_CONSTRAINT_LEN = 512  # bytes, checked before the hyphen ranges are rewritten
MAX_CONSTRAINT_GROUPS = 32  # "||" groups, counted after


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
                return prerelease_key(v.prerelease) != prerelease_key(con.prerelease)
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
        if len(text.encode("utf-8", "surrogatepass")) > MAX_CONSTRAINT_LEN:
            raise InvalidConstraint(
                f"constraint string is too long (max {MAX_CONSTRAINT_LEN} bytes)"
            )
        parts = _rewrite_hyphens(text).split("||")
        if len(parts) > MAX_CONSTRAINT_GROUPS:
            raise InvalidConstraint(f"too many constraint groups (max {MAX_CONSTRAINT_GROUPS})")
        groups: list[_Group] = []
        for part in parts:
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
