"""What is watched: a Flux object as a :class:`Target`, or why it cannot be one.

:mod:`exporter.flux.sources` builds targets from Flux objects and
:mod:`exporter.core.decision` judges them; the verdicts (``State``, ``ErrorReason``) are
shared nouns of :mod:`exporter.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from exporter.flux.annotations import Options
from exporter.flux.revision import AppliedRevision
from exporter.model import ErrorReason, RepositoryRef, TagRule


class TargetKind(StrEnum):
    """The Flux kind a reconcile request goes to."""

    OCI_REPOSITORY = "OCIRepository"
    HELM_CHART = "HelmChart"


class RuleKind(StrEnum):
    PINNED = "pinned"
    SEMVER = "semver"
    TAG = "tag"


class TargetId(NamedTuple):
    """A tuple: hashed and compared in C, since every lookup of the engine goes through it."""

    kind: TargetKind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    def log_fields(self, revision: str | None = None) -> dict[str, str]:
        """``extra`` for a log line about this object: JSON logs carry them as keys."""
        fields = {"object_kind": self.kind.value, "object_namespace": self.namespace,
                  "object_name": self.name}  # fmt: skip
        if revision:
            fields["object_revision"] = revision
        return fields


@dataclass(frozen=True, slots=True)
class WatchRule:
    """How Flux picks the artifact.

    ``semver``: ``tag_rule`` is set. ``tag``: ``tag`` is the mutable tag whose digest is
    watched. ``pinned``: ``digest`` (OCIRepository digest ref) or ``tag`` (the exact
    HelmChart version) is set; nothing is listed.
    """

    kind: RuleKind
    tag_rule: TagRule | None = None
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def semver(cls, rule: TagRule) -> WatchRule:
        return cls(RuleKind.SEMVER, tag_rule=rule)

    @classmethod
    def mutable_tag(cls, tag: str) -> WatchRule:
        return cls(RuleKind.TAG, tag=tag)

    @classmethod
    def pinned(cls, *, tag: str | None = None, digest: str | None = None) -> WatchRule:
        return cls(RuleKind.PINNED, tag=tag, digest=digest)


@dataclass(frozen=True, slots=True)
class Access:
    """References to what the registry client needs; the Secrets are read by the caller.

    For a HelmChart these come from its HelmRepository. ``secret`` holds a docker config
    JSON (OCIRepository) or ``username``/``password`` keys or a docker config JSON
    (HelmRepository); ``cert_secret`` holds ``ca.crt`` and/or ``tls.crt``+``tls.key``.
    """

    secret: str | None = None
    service_account: str | None = None
    cert_secret: str | None = None
    proxy_secret: str | None = None
    insecure: bool = False
    provider: str = "generic"


@dataclass(frozen=True, slots=True)
class Target:
    """One Flux object to keep fresh, as read from the API server.

    ``requested_at`` is the ``reconcile.fluxcd.io/requestedAt`` annotation,
    ``requested_revision`` the exporter's own ``<prefix>requested-revision`` one;
    ``applied`` is None when Flux has no artifact (``applied_problem`` says why when
    the revision could not be read). ``artifact_updated_at`` is
    ``status.artifact.lastUpdateTime`` as written (RFC 3339). ``ready`` is the Ready
    condition (None: absent or Unknown).
    """

    id: TargetId
    api_version: str
    plural: str
    repository: RepositoryRef
    rule: WatchRule
    options: Options
    access: Access
    suspended: bool = False
    applied: AppliedRevision | None = None
    applied_problem: str | None = None
    artifact_updated_at: str | None = None
    ready: bool | None = None
    ready_reason: str | None = None
    last_handled_reconcile_at: str | None = None
    requested_at: str | None = None
    requested_revision: str | None = None
    has_values_files: bool = False
    warnings: tuple[str, ...] = ()
    uid: str | None = None  # the object's, for Events (kubectl describe matches on it)
    resource_version: str | None = None
    event_annotations: tuple[tuple[str, str], ...] = ()  # event.toolkit.fluxcd.io/*, for Flux


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """An opted-in object that cannot be watched: bad annotations, bad spec, or a
    feature the exporter cannot reproduce. ``problems`` are messages for an Event."""

    id: TargetId
    api_version: str
    plural: str
    reason: ErrorReason  # CONFIG or UNSUPPORTED
    problems: tuple[str, ...]
    uid: str | None = None  # the object's, for Events (kubectl describe matches on it)
    resource_version: str | None = None
    event_annotations: tuple[tuple[str, str], ...] = ()  # event.toolkit.fluxcd.io/*, for Flux
