"""The cloud credential exchanges' exceptions. Nothing from httpx escapes the package.

    CloudError                  reason: ErrorReason (the target's, and a metric label)
    ├── CloudAuthError          AUTH         missing configuration (no token file, no
    │                                        role), a refusal (a role that refused, a
    │                                        wrong audience), an answer without credentials
    └── CloudUnavailable        UNAVAILABLE  the endpoint cannot be reached, times out or
                                             answers 5xx

Messages name what was missing or refused and where (the endpoint's origin, the role,
the annotation), never a token, a key or a password: a message becomes an Event, a log
line and a state reason.
"""

from __future__ import annotations

from typing import ClassVar

from exporter.model import ErrorReason


class CloudError(Exception):
    reason: ClassVar[ErrorReason] = ErrorReason.AUTH


class CloudAuthError(CloudError):
    reason = ErrorReason.AUTH


class CloudUnavailable(CloudError):
    reason = ErrorReason.UNAVAILABLE
