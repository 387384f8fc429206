"""AWS Signature Version 4, for the two calls the exporter signs (ECR's and ECR Public's
GetAuthorizationToken). Pure: the time, the keys and the request are handed in.

Written from AWS's description ("Create a signed AWS API request") and tested against the
vectors of AWS's ``aws-sig-v4-test-suite``: canonical request (method, URI with empty
and dot segments removed and each segment percent-encoded, query sorted by encoded name
then value, headers lower-cased, trimmed, runs of spaces collapsed, repeated ones joined
by ``,``, sorted), string to sign, the HMAC chain ``AWS4<secret>`` → date → region →
service → ``aws4_request``, and the ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


@dataclass(frozen=True)
class AwsKeys:
    """Temporary (or long-lived) AWS credentials; ``expires_at`` in Unix seconds."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None


@dataclass(frozen=True)
class Signed:
    """What signing adds to a request, and the intermediate texts (for tests)."""

    headers: dict[str, str]
    canonical_request: str
    string_to_sign: str
    signature: str


def uri_encode(text: str, *, slash: bool = True) -> str:
    """RFC 3986 percent-encoding of UTF-8 bytes, upper-case hex; ``/`` kept unless ``slash``."""
    out = []
    for byte in text.encode():
        if byte in _UNRESERVED or (byte == 0x2F and not slash):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def canonical_uri(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(uri_encode(segment))
    uri = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        uri += "/"
    return uri


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower().strip(), []).append(" ".join(value.split()))
    names = sorted(merged)
    text = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return text, ";".join(names)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    keys: AwsKeys,
    region: str,
    service: str,
    when: datetime,
) -> Signed:
    """Sign a request to ``host`` (its ``Host`` header, with a port if not the default).

    ``when`` must be UTC. ``headers`` are the request's own (``Host`` and ``X-Amz-Date``
    are added, and ``X-Amz-Security-Token`` with a session token); the result's
    ``headers`` are those three and ``Authorization``, to send along.
    """
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    date = stamp[:8]
    added = {"Host": host, "X-Amz-Date": stamp}
    if keys.session_token:
        added["X-Amz-Security-Token"] = keys.session_token
    all_headers = [*headers, *added.items()]
    canonical_headers, signed_headers = _canonical_headers(all_headers)
    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    key = signing_key(keys.secret_access_key, date, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={keys.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return Signed(added, canonical_request, string_to_sign, signature)
