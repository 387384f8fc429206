"""The nouns every layer shares: frozen value types and the verdicts.

The verdicts (``State``, ``ErrorReason``, ``EventResult``) are closed sets exported as
metric label values, which dashboards and alerts name: adding, renaming or removing a
member changes that contract.

Nothing here does I/O or reads the clock; times are plain floats (Unix seconds) handed in
by the caller. Credentials never print their secrets: their ``repr`` only shows which kind
they are, so a stray log line or exception cannot leak them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum


class Flavor(StrEnum):
    """Which Flux code path picks the tag (``exporter.flux.policy`` documents each)."""

    OCI = "oci"  # OCIRepository: fluxcd/pkg version.ParseVersion + Masterminds constraints
    HELM = "helm"  # HelmChart from an OCI HelmRepository: strict semver, `_` -> `+`
    OCI_CHART = "oci-chart"  # OCIRepository whose layerSelector is the Helm chart layer:
    # as OCI, with `_` read as `+` (source-controller convertOCIToSemVerTag)
    OCI_FLUX_2_6 = "oci-flux-2.6"  # OCI as Flux 2.6 and earlier parsed tags (strict, `v`)
    OCI_CHART_FLUX_2_6 = "oci-chart-flux-2.6"  # OCI_CHART as Flux 2.6 and earlier did


class State(StrEnum):
    """Where a target stands. The metric exports exactly these ten values."""

    UP_TO_DATE = "up_to_date"  # Flux applied the freshest artifact
    BEHIND = "behind"  # a fresher artifact exists and no request is outstanding for it
    PINNED = "pinned"  # digest ref or exact chart version: nothing newer can be applied
    SUSPENDED = "suspended"  # spec.suspend: Flux does not reconcile it
    PENDING = "pending"  # requested; Flux has not handled the request yet
    STUCK = "stuck"  # Flux handled the request but did not apply the artifact
    NO_MATCH = "no_match"  # no tag satisfies the rule
    ERROR = "error"  # the registry failed (see ErrorReason)
    CONFIG_ERROR = "config_error"  # bad annotations or an unusable Flux spec
    UNSUPPORTED = "unsupported"  # e.g. cloud provider workload identity


class ErrorReason(StrEnum):
    """Why a target is in ``error``, ``config_error`` or ``unsupported``."""

    AUTH = "auth"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    PROTOCOL = "protocol"
    CONFIG = "config"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal"  # a bug of ours: logged with its traceback


class EventResult(StrEnum):
    """What became of a push event (``flux_oci_events_received_total{result}``)."""

    ACCEPTED = "accepted"  # names watched targets: they are checked now
    IGNORED = "ignored"  # names no watched target
    COALESCED = "coalesced"  # names a repository refreshed moments ago: checked at the gap's end
    UNAUTHORIZED = "unauthorized"  # without the source's secret: refused (401)
    INVALID = "invalid"  # not the documented shape or content type: refused


class Delivery(StrEnum):
    """What became of an Event posted to Flux (``flux_oci_flux_events_total{result}``)."""

    SENT = "sent"  # accepted by notification-controller
    DUPLICATE = "duplicate"  # HTTP 429: it drops a repeat within its rate-limit interval
    FAILED = "failed"  # no 2xx after the retries (or a 4xx, not retried)
    DROPPED = "dropped"  # the queue was full: the oldest waiting event went


@dataclass(frozen=True)
class TagRule:
    """How Flux picks a tag from a repository's tag list."""

    semver: str
    semver_filter: str | None = None
    flavor: Flavor = Flavor.OCI


@dataclass(frozen=True)
class Credentials:
    """What a registry accepts from one tenant. At most one of the forms is used.

    ``identity_token`` is an OAuth2 refresh token (docker config ``identitytoken``);
    ``registry_token`` is a bearer token sent as-is (docker config ``registrytoken``).
    ``issuer`` names where short-lived cloud credentials come from (provider, identity,
    registry): the fingerprint is then the issuer's, so a token rotated every hour keeps
    the tag cache, the token cache and the auth breaker of its identity.
    """

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)
    issuer: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        if self.registry_token:
            return "registrytoken"
        if self.identity_token:
            return "identitytoken"
        if self.username is not None or self.password is not None:
            return "basic"
        return "anonymous"

    def fingerprint(self) -> str:
        """A stable, non-reversible key for caches: equal credentials, equal fingerprint."""
        if self.kind == "anonymous":
            return "anonymous"
        if self.issuer is not None:
            return hashlib.sha256(("issuer\x00" + self.issuer).encode()).hexdigest()[:32]
        material = "\x00".join(
            v or ""
            for v in (self.username, self.password, self.identity_token, self.registry_token)
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind!r})"

    __str__ = __repr__


ANONYMOUS = Credentials()


@dataclass(frozen=True)
class TLSOptions:
    """How to talk to a registry: plain HTTP allowed, extra CA bundle, client certificate."""

    insecure: bool = False
    ca_pem: bytes | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        material = b"\x00".join(
            [b"1" if self.insecure else b"0"]
            + [v or b"" for v in (self.ca_pem, self.client_cert_pem, self.client_key_pem)]
        )
        return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class RepositoryRef:
    """One repository in one registry: ``registry`` is ``host[:port]``, ``path`` has no tag."""

    registry: str
    path: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}"

    @classmethod
    def parse(cls, url: str) -> RepositoryRef:
        """Parse ``oci://host[:port]/path`` (the ``oci://`` scheme is optional) as Flux would
        accept it: the path follows the OCI distribution name grammar, the host is a
        ``host[:port]``; one trailing ``/`` is tolerated (Flux allows it on a HelmRepository).

        Raises ValueError. The message never repeats credentials, a query or a fragment:
        URLs holding any (``@``, ``?``, ``#``) or control characters are refused before
        anything of them is quoted.
        """
        if any(_is_control(c) for c in url):
            raise ValueError(f"{_INVALID}: control characters are not allowed")
        if "@" in url:
            raise ValueError(
                f"{_INVALID}: '@' is not allowed (credentials belong in a Secret, "
                "a digest in spec.ref.digest)"
            )
        if "?" in url or "#" in url:
            raise ValueError(f"{_INVALID}: a query or fragment ('?', '#') is not allowed")
        rest = url
        if rest.startswith("oci://"):
            rest = rest[len("oci://") :]
        elif "://" in rest:
            scheme = quoted(rest.split("://", 1)[0])
            raise ValueError(f"unsupported URL scheme {scheme}: expected {_FORM}")
        host, sep, path = rest.partition("/")
        path = path.removesuffix("/")
        if not host or not sep or not path:
            raise ValueError(f"{_INVALID} {quoted(url)}: expected {_FORM}")
        if not _is_host(host):
            raise ValueError(f"{_INVALID}: host {quoted(host)} is not HOST[:PORT]")
        if ":" in path:
            raise ValueError(f"{_INVALID}: no tag allowed in {quoted(path)} (Flux reads spec.ref)")
        if not _REPOSITORY_NAME.fullmatch(path):
            raise ValueError(
                f"{_INVALID}: path {quoted(path)} is not an OCI repository name "
                "(lowercase letters and digits, separated by '.', '_', '__', '-' or '/')"
            )
        return cls(registry=host.lower(), path=path)


_INVALID = "invalid OCI repository URL"
_FORM = "oci://HOST[:PORT]/PATH"
# the OCI distribution spec's repository name; `[a-z0-9]` in Python's re is ASCII only
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_NAME = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::([0-9]{{1,5}}))?"
)


def _is_host(host: str) -> bool:
    match = _HOST.fullmatch(host)
    return match is not None and (match.group(1) is None or int(match.group(1)) <= 65535)


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0


def quoted(text: str) -> str:
    """Text from outside quoted for a message: escaped, and cut to a bounded length."""
    return repr(text if len(text) <= 80 else text[:80] + "…")


@dataclass(frozen=True)
class CacheKey:
    """A tag list is shared only by objects with the same repository and the same access."""

    repository: RepositoryRef
    credentials: str  # Credentials.fingerprint()
    tls: str  # TLSOptions.fingerprint()


@dataclass(frozen=True)
class TagListing:
    """A repository's tags as last fetched.

    ``stale`` is true when the latest attempt failed and this is the last good answer;
    ``error`` then names the failure's reason.
    """

    repository: RepositoryRef
    tags: tuple[str, ...]
    fetched_at: float
    stale: bool = False
    error: ErrorReason | None = None


DEFAULT_TLS = TLSOptions()


def printable(text: str) -> str:
    """``text`` made safe for a terminal: every character that is not printable (control
    characters, so ANSI and OSC escape sequences; format characters such as bidi overrides;
    lone surrogates, which no UTF-8 stream can carry) becomes its Python escape
    (``\\x1b``, ``\\u202e``, ``\\ud800``); printable text, non-ASCII included, is unchanged.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
