"""The worker's side of a check: resolve the object's registry access, then observe.

Runs on a worker thread and never raises: an unusable access is ``config``, a bug is
``internal`` (logged with its traceback). It also says when the artifact observed is new
and its creation time unknown: the engine has that read later, at a lower priority.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from exporter.app.observe import creation_wanted, observe
from exporter.core.observation import Fresh, Observation, RegistryFailure
from exporter.flux.targets import Target
from exporter.kube.access import AccessError, AccessRefs, RegistryAccess
from exporter.model import ErrorReason, RepositoryRef
from exporter.registry.cache import TagCache

log = logging.getLogger(__name__)


class AccessSource(Protocol):
    def resolve(self, refs: AccessRefs, repo: RepositoryRef) -> RegistryAccess: ...


@dataclass(frozen=True, slots=True)
class Creation:
    """A new artifact whose creation time is still to be read, with the access to read it."""

    repository: RepositoryRef
    digest: str
    access: RegistryAccess


class Creations:
    """New artifacts whose creation time is still to be read, one read per artifact. The
    time only moves a lag's start back (and so maybe ``min-age``): the engine holds them
    until its first pass is done, then has them read when no check of the host waits."""

    def __init__(self) -> None:
        self._pending: dict[tuple[RepositoryRef, str], Creation] = {}
        self._reading = 0

    def add(self, creation: Creation) -> None:
        self._pending.setdefault((creation.repository, creation.digest), creation)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def start(self) -> list[Creation]:
        """The ones to read now (counted as under way until :meth:`done`)."""
        started = list(self._pending.values())
        self._pending.clear()
        self._reading += len(started)
        return started

    def done(self) -> None:
        self._reading = max(0, self._reading - 1)

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._reading > 0


class Checker:
    def __init__(self, access: AccessSource, cache: TagCache) -> None:
        self._access = access
        self._cache = cache
        # one pass only (check, --once): read a creation time in the check itself, so the
        # pass reports the lag from it and decides each target once
        self.creation_inline = False

    def check(self, target: Target, last: Fresh | None) -> tuple[Observation, Creation | None]:
        try:
            try:
                access = self._access.resolve(refs(target), target.repository)
            except AccessError as exc:
                return RegistryFailure(exc.reason, str(exc), last), None
            observation = observe(target, access, self._cache, last)
            digest = creation_wanted(target, observation)
            if digest is None or self._known(target.repository, digest, access):
                return observation, None
            creation = Creation(target.repository, digest, access)
            if not self.creation_inline:
                return observation, creation
            self.created(creation)
            return observe(target, access, self._cache, last), None
        except Exception:
            log.exception("checking %s failed unexpectedly", target.id,
                          extra=target.id.log_fields())  # fmt: skip
            return RegistryFailure(ErrorReason.INTERNAL, "internal error (see the log)", last), None

    def created(self, creation: Creation) -> float | None:
        """Read it (once per artifact, whatever the number of objects); None: unknown."""
        try:
            access = creation.access
            return self._cache.created(
                creation.repository, creation.digest, access.credentials, access.tls
            )
        except Exception:
            log.exception("reading the creation time of %s@%s failed unexpectedly",
                          creation.repository, creation.digest)  # fmt: skip
            return None

    def _known(self, repo: RepositoryRef, digest: str, access: RegistryAccess) -> bool:
        return self._cache.known_created(repo, digest, access.credentials, access.tls) is not None


def same_question(first: Target, other: Target, answer: Observation) -> bool:
    """Whether ``answer``, observed for ``first``, is what checking ``other`` would observe
    now: the same repository read with the same access (namespace, secrets, certificates:
    one tenant's answer never stands for another's), the same rule, kind and applied
    revision. A failure is not shared: it carries the target's own last known artifact."""
    return (
        not isinstance(answer, RegistryFailure)
        and first.repository == other.repository
        and first.id.kind == other.id.kind
        and first.rule == other.rule
        and first.applied == other.applied
        and refs(first) == refs(other)
    )


def refs(target: Target) -> AccessRefs:
    a = target.access
    return AccessRefs(
        namespace=target.id.namespace,
        secret_name=a.secret,
        service_account=a.service_account,
        cert_secret_name=a.cert_secret,
        insecure=a.insecure,
        basic_auth_keys=target.id.kind == "HelmChart",
        provider=a.provider,
        account_identity=target.id.kind != "HelmChart",
    )
