"""RFC 3339 timestamps as Kubernetes and Flux write them, to and from Unix seconds.

``reconcile.fluxcd.io/requestedAt`` is compared as a string by Flux (it copies it to
``status.lastHandledReconcileAt``), so ours is formatted exactly as Go's RFC3339Nano in
UTC; what we read back may carry any offset and up to nanoseconds. Pure: no clock.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_request_token(now: float) -> str:
    """``now`` as Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    nanos_total = int((Decimal(repr(now)) * 1_000_000_000).to_integral_value())
    seconds, nanos = divmod(nanos_total, 1_000_000_000)
    stamp = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def parse_timestamp(text: str | None) -> float | None:
    """Unix seconds from an RFC 3339 timestamp (any offset, up to nanoseconds), else None."""
    if text is None:
        return None
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    value = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        value += int(match.group(7).ljust(9, "0")) / 1e9
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        value -= offset if match.group(9) == "+" else -offset
    return value
