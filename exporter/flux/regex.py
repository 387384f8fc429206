"""RE2 searches, as Go's ``regexp.MatchString`` runs them (unanchored, linear time).

Flux evaluates ``semverFilter`` with Go's RE2; Python's ``re`` has another syntax and
backtracks, so a hostile pattern in an annotation could hang the exporter. RE2's own
error logging (to stderr, through absl) is switched off: problems come back as one clean
``RegexError`` message for the caller to report.
"""

from __future__ import annotations

from typing import Any

import re2


class RegexError(ValueError):
    pass


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    return options


class Search:
    """``Search(pattern).matches(text)``: does the pattern match anywhere in ``text``."""

    __slots__ = ("_set", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        try:
            re2.compile(pattern, options=_options())
        except re2.error as exc:
            raise RegexError(f"invalid regular expression {pattern!r}: {_text(exc)}") from None
        self._set: Any = re2.Set.SearchSet(_options())
        self._set.Add(pattern)
        self._set.Compile()

    def matches(self, text: str) -> bool:
        return bool(self._set.Match(text))


def _text(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail)
