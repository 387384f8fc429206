"""Parse ``WWW-Authenticate`` headers (RFC 7235) into challenges.

Registries put realms and scopes in quoted strings that contain commas
(``scope="repository:a:pull,push"``) and may offer several challenges in one
header; splitting on commas gets both wrong. This is a small tokenizer over the
RFC grammar: ``challenge = scheme [ token68 / #auth-param ]``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = _TCHARS | frozenset("/")  # token68 adds '/' (and trailing '=', handled apart)


@dataclass(frozen=True)
class Challenge:
    """One challenge; ``scheme`` is lower-cased, parameter names too (they are case-insensitive)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name.lower(), default)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def skip_ws_commas(self) -> None:
        while self.peek() in (" ", "\t", ","):
            self.pos += 1

    def token(self, chars: frozenset[str] = _TCHARS) -> str:
        start = self.pos
        while self.peek() and self.peek() in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """Read a quoted-string starting at the quote; an unterminated one runs to the end."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                break
            else:
                out.append(ch)
        return "".join(out)


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in one ``WWW-Authenticate`` value, in order; garbage is skipped."""
    s = _Scanner(header)
    challenges: list[Challenge] = []
    while True:
        s.skip_ws_commas()
        if not s.peek():
            return challenges
        scheme = s.token()
        if not scheme:
            s.pos += 1  # not a token character: skip it and resynchronise
            continue
        params: dict[str, str] = {}
        s.skip_ws()
        # token68 form: a bare token (with optional '=' padding) followed by the end or a comma
        mark = s.pos
        t68 = s.token(_TOKEN68)
        pad_start = s.pos
        while s.peek() == "=":
            s.pos += 1
        padding = s.text[pad_start : s.pos]
        s.skip_ws()
        if t68 and s.peek() in ("", ","):
            challenges.append(Challenge(scheme.lower(), params, t68 + padding))
            continue
        s.pos = mark
        while True:
            s.skip_ws_commas()
            mark = s.pos
            name = s.token()
            s.skip_ws()
            if not name or s.peek() != "=":
                s.pos = mark  # a new challenge's scheme (or the end)
                break
            s.pos += 1
            s.skip_ws()
            value = s.quoted() if s.peek() == '"' else s.token()
            params.setdefault(name.lower(), value)
        challenges.append(Challenge(scheme.lower(), params))


def quote(value: str) -> str:
    """A quoted-string for ``value``: the inverse of the parser for any text."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenge(scheme: str, params: dict[str, str]) -> str:
    """Render a challenge, every value quoted (what registries send)."""
    rendered = ",".join(f"{name}={quote(value)}" for name, value in params.items())
    return f"{scheme} {rendered}" if rendered else scheme
