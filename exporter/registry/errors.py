"""The registry client's exceptions. Nothing from httpx escapes the registry package.

    RegistryError                 reason: str (a fixed, label-safe word)
    ├── RegistryAuthError         "auth"          401/403, bad credentials, token endpoint refused
    │   └── RegistryAuthBackoff   "auth"          too many auth failures: not even tried
    ├── RegistryNotFound          "not_found"     repository or tag unknown
    ├── RegistryRateLimited       "rate_limited"  429 (retry_after: seconds, when known)
    ├── RegistryUnavailable       "unavailable"   5xx, timeouts, connection and TLS failures
    └── RegistryProtocolError     "protocol"      answers that break the distribution spec

Messages name the registry and repository, never a credential or a token.
"""

from __future__ import annotations


class RegistryError(Exception):
    reason = "error"


class RegistryAuthError(RegistryError):
    reason = "auth"


class RegistryAuthBackoff(RegistryAuthError):
    pass


class RegistryNotFound(RegistryError):
    reason = "not_found"


class RegistryRateLimited(RegistryError):
    reason = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError):
    reason = "unavailable"


class RegistryProtocolError(RegistryError):
    reason = "protocol"


REASONS: tuple[str, ...] = ("auth", "not_found", "rate_limited", "unavailable", "protocol")
