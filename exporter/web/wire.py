"""HTTP/1.x on the wire, as the front door needs it: a request head parsed, an answer
formatted. No I/O; one request per connection (every answer closes it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser

TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Head:
    """A request head: method, target (path and query as sent), lower-cased header names."""

    method: str
    target: str
    headers: Mapping[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def content_length(self) -> int | None:
        """The declared body length; None when absent or not a plain decimal number."""
        value = self.headers.get("content-length", "").strip()
        return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


@dataclass(frozen=True, slots=True)
class Request:
    head: Head
    body: bytes
    peer: str  # address:port, for log lines
    received: float  # wall-clock seconds when the head was complete


def head_end(data: bytes | bytearray) -> tuple[int, int] | None:
    """(where the head ends, where the body starts): the blank line, bare LF tolerated;
    None while it has not arrived."""
    ends = [(i, i + n) for i, n in ((data.find(b"\r\n\r\n"), 4), (data.find(b"\n\n"), 2)) if i >= 0]
    return min(ends) if ends else None


def parse_head(head: bytes) -> Head | None:
    """The head of an HTTP/1.x request; None when it is not one (any number of header
    fields: the size of the head is what is capped, by the door)."""
    line, _, rest = head.partition(b"\n")
    words = line.rstrip(b"\r").decode("latin-1").split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/1.") or not words[1].startswith("/"):
        return None
    message = BytesHeaderParser().parsebytes(rest)
    if message.defects:
        return None
    return Head(words[0], words[1], {k.lower(): str(v) for k, v in message.items()})


def response(
    code: int,
    body: bytes | list[bytes],
    content_type: str = TEXT,
    extra: Mapping[str, str] | None = None,
) -> list[bytes]:
    """Status line and headers as the first part, then the body's parts untouched."""
    parts = body if isinstance(body, list) else [body]
    fields = {
        "Content-Type": content_type,
        "Content-Length": str(sum(len(p) for p in parts)),
        "Connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {code} {REASONS[code]}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items()
    )
    return [(head + "\r\n").encode("latin-1"), *parts]


def text(code: int, message: str, extra: Mapping[str, str] | None = None) -> list[bytes]:
    return response(code, (message + "\n").encode(), TEXT, extra)
