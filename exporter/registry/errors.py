"""The registry client's exceptions. Nothing from httpx escapes the registry package.

    RegistryError                 reason: str (a fixed, label-safe word)
    ├── RegistryAuthError         "auth"          401/403, bad credentials, token endpoint refused
    │   └── RegistryAuthBackoff   "auth"          too many auth failures: not even tried
    ├── RegistryNotFound          "not_found"     repository or tag unknown
    ├── RegistryRateLimited       "rate_limited"  429 (retry_after: seconds, when known)
    ├── RegistryUnavailable       "unavailable"   5xx, timeouts, the per-request deadline,
    │                                             connection and TLS failures
    ├── RegistryProtocolError     "protocol"      answers that break the distribution spec or
    │                                             would send credentials elsewhere
    └── RegistryConfigError       "config"        a repository URL, credential or TLS setting
                                                  that no request can carry

Messages name the registry and repository, never a credential or a token. Every exception
of the HTTP stack (httpx, httpcore, h11, ssl, URL and IDNA encoding) is mapped to one of
these before it leaves the package, its cause chained.
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


class RegistryConfigError(RegistryError):
    reason = "config"


REASONS: tuple[str, ...] = (
    "auth",
    "not_found",
    "rate_limited",
    "unavailable",
    "protocol",
    "config",
)
