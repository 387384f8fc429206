"""Frozen value types shared by every layer.

Nothing here does I/O or reads the clock; times are plain floats (Unix seconds)
handed in by the caller. Credentials never print their secrets: their ``repr``
only shows which kind they are, so a stray log line or exception cannot leak them.
"""

from __future__ import annotations

import hashlib
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
    """

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)

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
        """Parse ``oci://host[:port]/path`` (the ``oci://`` scheme is optional)."""
        rest = url.strip()
        if rest.startswith("oci://"):
            rest = rest[len("oci://") :]
        elif "://" in rest:
            raise ValueError(f"unsupported URL scheme in {url!r}: expected oci://")
        rest = rest.rstrip("/")
        host, sep, path = rest.partition("/")
        if not host or not sep or not path:
            raise ValueError(f"invalid OCI repository URL {url!r}: expected oci://HOST[:PORT]/PATH")
        if "@" in host:
            raise ValueError("invalid OCI repository URL: credentials in the URL are not supported")
        if ":" in path.rsplit("/", 1)[-1] or "@" in path:
            raise ValueError(f"invalid OCI repository URL {url!r}: no tag or digest allowed")
        return cls(registry=host.lower(), path=path)


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
    ``error`` then names the failure's reason (one of the registry error reasons).
    """

    repository: RepositoryRef
    tags: tuple[str, ...]
    fetched_at: float
    stale: bool = False
    error: str | None = None


DEFAULT_TLS = TLSOptions()
