"""The worker's side of a check: access, observation, and the creation time left for later."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from exporter.app.check import AccessSource, Checker, Creation, same_question
from exporter.core.observation import Fresh, RegistryFailure
from exporter.flux.annotations import Options
from exporter.flux.revision import AppliedRevision, parse_oci_revision
from exporter.flux.targets import Access, Target, TargetId, TargetKind, WatchRule
from exporter.kube.access import AccessError, AccessRefs, RegistryAccess
from exporter.model import (
    ANONYMOUS,
    DEFAULT_TLS,
    Credentials,
    ErrorReason,
    RepositoryRef,
    TagRule,
    TLSOptions,
)
from exporter.registry.cache import TagCache
from tests.app.fakes import DIGEST, FakeAccess, FakeRegistry

T0 = 1_800_000_000.0
HOST = "registry.example"
REPO = RepositoryRef(HOST, "team/app")
ACCESS = RegistryAccess(ANONYMOUS, TLSOptions(insecure=True))  # what FakeAccess grants
APP = Target(
    id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "app"),
    api_version="source.toolkit.fluxcd.io/v1",
    plural="ocirepositories",
    repository=REPO,
    rule=WatchRule.semver(TagRule(">=1.0.0")),
    options=Options(interval=60.0),
    access=Access(secret="pull"),
    applied=AppliedRevision("1.0.0", "sha256:" + "0" * 64, None, "1.0.0@sha256:" + "0" * 64),
)
NEW = Fresh("1.1.0", DIGEST, versions_behind=1)


def checker(registry: FakeRegistry, access: AccessSource | None = None) -> Checker:
    return Checker(access or FakeAccess(), TagCache(registry, ttl=60.0, clock=lambda: T0))


def registry() -> FakeRegistry:
    return FakeRegistry(tags={f"{REPO}": ["1.0.0", "1.1.0"]})


def created_reads(reg: FakeRegistry) -> int:
    return sum(call.startswith("created ") for call in reg.calls)


def test_a_new_artifact_with_an_unknown_creation_time_asks_for_it() -> None:
    reg = registry()
    observation, creation = checker(reg).check(APP, None)
    assert observation == NEW  # created_at None: the check did not wait for it
    assert creation == Creation(REPO, DIGEST, ACCESS)
    assert created_reads(reg) == 0


def test_once_read_the_creation_time_comes_with_the_next_check() -> None:
    reg = registry()
    reg.created[DIGEST] = T0 - 600
    c = checker(reg)
    _, creation = c.check(APP, None)
    assert creation is not None
    assert c.created(creation) == T0 - 600
    observation, again = c.check(APP, NEW)
    assert observation == replace(NEW, created_at=T0 - 600)
    assert again is None
    assert created_reads(reg) == 1


def test_a_creation_time_the_artifact_does_not_have_is_asked_once() -> None:
    reg = registry()
    c = checker(reg)
    _, creation = c.check(APP, None)
    assert creation is not None
    assert c.created(creation) is None
    observation, again = c.check(APP, NEW)
    assert observation == NEW and again is None
    assert created_reads(reg) == 1


def test_an_applied_artifact_wants_no_creation_time() -> None:
    reg = registry()
    applied = AppliedRevision("1.1.0", DIGEST, None, f"1.1.0@{DIGEST}")
    observation, creation = checker(reg).check(replace(APP, applied=applied), None)
    assert observation == Fresh("1.1.0", DIGEST, versions_behind=0)
    assert creation is None


def test_the_objects_access_is_resolved_for_the_check() -> None:
    access = FakeAccess()
    checker(registry(), access).check(APP, None)
    assert access.asked == [AccessRefs(namespace="apps", secret_name="pull")]


class RefusedAccess:
    def resolve(self, refs: AccessRefs, repo: RepositoryRef) -> RegistryAccess:
        raise AccessError("secret apps/pull not found")


class BrokenAccess:
    def resolve(self, refs: AccessRefs, repo: RepositoryRef) -> RegistryAccess:
        raise RuntimeError("a bug")


def test_an_unusable_access_is_a_config_failure() -> None:
    reg = registry()
    observation, creation = checker(reg, RefusedAccess()).check(APP, NEW)
    assert observation == RegistryFailure(ErrorReason.CONFIG, "secret apps/pull not found", NEW)
    assert creation is None
    assert reg.calls == []


def test_a_bug_is_an_internal_failure_never_an_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="exporter.app.check"):
        observation, creation = checker(registry(), BrokenAccess()).check(APP, NEW)
    assert observation == RegistryFailure(ErrorReason.INTERNAL, "internal error (see the log)", NEW)
    assert creation is None
    [logged] = caplog.records
    assert logged.exc_info is not None and str(APP.id) in logged.getMessage()


class BrokenCreated(FakeRegistry):
    def manifest_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> float | None:
        raise RuntimeError("a bug")


def test_a_bug_reading_a_creation_time_answers_unknown(caplog: pytest.LogCaptureFixture) -> None:
    c = checker(BrokenCreated(tags={f"{REPO}": ["1.0.0", "1.1.0"]}))
    with caplog.at_level(logging.ERROR, logger="exporter.app.check"):
        assert c.created(Creation(REPO, DIGEST, ACCESS)) is None
    [logged] = caplog.records
    assert logged.exc_info is not None and DIGEST in logged.getMessage()


def test_an_answer_is_shared_only_with_the_same_question() -> None:
    other = replace(APP, id=APP.id._replace(name="other"))
    assert same_question(APP, other, NEW)
    tenant = replace(APP, id=APP.id._replace(namespace="tenant"))
    assert not same_question(APP, tenant, NEW)  # another tenant asks with its own access
    assert not same_question(APP, replace(APP, access=replace(APP.access, secret="other")), NEW)
    revision = parse_oci_revision("1.0.0@" + DIGEST)
    assert isinstance(revision, AppliedRevision)
    applied = replace(APP, applied=revision)
    assert not same_question(APP, applied, NEW)  # versions behind differ
    assert not same_question(APP, other, RegistryFailure(ErrorReason.AUTH))
