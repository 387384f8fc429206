"""The registry client's exceptions. Nothing from httpx escapes the registry package.

    RegistryError                 reason: ErrorReason (the target's, and a metric label)
    ├── RegistryAuthError         AUTH          401/403, bad credentials, token endpoint refused
    │   └── RegistryAuthBackoff   AUTH          too many auth failures: not even tried
    ├── RegistryNotFound          NOT_FOUND     repository or tag unknown
    ├── RegistryRateLimited       RATE_LIMITED  429 (retry_after: seconds, when known)
    ├── RegistryUnavailable       UNAVAILABLE   5xx, timeouts, the per-request deadline,
    │                                           connection and TLS failures
    ├── RegistryProtocolError     PROTOCOL      answers that break the distribution spec or
    │                                           would send credentials elsewhere
    └── RegistryConfigError       CONFIG        a repository URL, credential or TLS setting
                                                that no request can carry

Messages name the registry and repository, never a credential or a token. Every exception
of the HTTP stack (httpx, httpcore, h11, ssl, URL and IDNA encoding) is mapped to one of
these before it leaves the package, its cause chained.
"""

from __future__ import annotations

from typing import ClassVar

from exporter.model import ErrorReason


class RegistryError(Exception):
    reason: ClassVar[ErrorReason] = ErrorReason.INTERNAL  # only its subclasses are raised


class RegistryAuthError(RegistryError):
    reason = ErrorReason.AUTH


class RegistryAuthBackoff(RegistryAuthError):
    pass


class RegistryNotFound(RegistryError):
    reason = ErrorReason.NOT_FOUND


class RegistryRateLimited(RegistryError):
    reason = ErrorReason.RATE_LIMITED

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError):
    reason = ErrorReason.UNAVAILABLE


class RegistryProtocolError(RegistryError):
    reason = ErrorReason.PROTOCOL


class RegistryConfigError(RegistryError):
    reason = ErrorReason.CONFIG
