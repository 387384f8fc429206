"""``spec.provider`` in registry access, in source-controller v1.9.3's order: a Secret or
the ServiceAccount's pull secrets win; otherwise the cloud identity, the exporter's own or
(object-level, behind the setting) the object's ServiceAccount's, whose token is asked of
the TokenRequest API with the cloud's audience. Faked at the wire: a loopback API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from exporter.cloud.broker import ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.flux.cloud import CloudRegistry, Provider, match_registry
from exporter.kube.access import AccessError, AccessRefs, AccessResolver
from exporter.model import ANONYMOUS, Credentials, ErrorReason, RepositoryRef
from tests.fixtures.standin import HANG_UP, FakeKube

ECR = RepositoryRef("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "apps/web")
ROLE = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/reader"}
CLOUD_CREDENTIALS = Credentials("AWS", "from-the-cloud", issuer="aws")


class RecordingCloud:
    def __init__(self) -> None:
        self.asked: list[tuple[CloudRegistry, ObjectIdentity | None]] = []

    def match(self, provider: Provider, registry: str) -> CloudRegistry:
        return match_registry(provider, registry)

    def credentials(
        self, registry: CloudRegistry, identity: ObjectIdentity | None = None
    ) -> Credentials:
        self.asked.append((registry, identity))
        return CLOUD_CREDENTIALS


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube()
    yield fake
    fake.stop()


def resolver(kube: FakeKube, cloud: RecordingCloud, object_level: bool = False) -> AccessResolver:
    return AccessResolver(
        kube.client(), clock=time.monotonic, cloud=cloud, object_level_identity=object_level
    )


def docker_config(host: str) -> bytes:
    return json.dumps({"auths": {host: {"username": "u", "password": "p"}}}).encode()


def test_controller_identity_when_nothing_else_is_given(kube: FakeKube) -> None:
    cloud = RecordingCloud()
    access = resolver(kube, cloud).resolve(AccessRefs("apps", provider="aws"), ECR)
    assert access.credentials is CLOUD_CREDENTIALS
    [(registry, identity)] = cloud.asked
    assert (registry.region, identity) == ("eu-west-1", None)


def test_generic_and_empty_providers_stay_anonymous(kube: FakeKube) -> None:
    cloud = RecordingCloud()
    for provider in ("generic", ""):
        access = resolver(kube, cloud).resolve(AccessRefs("apps", provider=provider), ECR)
        assert access.credentials is ANONYMOUS
    assert cloud.asked == []


def test_a_secret_wins_over_the_provider(kube: FakeKube) -> None:
    kube.secret("apps", "pull", {".dockerconfigjson": docker_config("ghcr.io")})
    cloud = RecordingCloud()
    refs = AccessRefs("apps", secret_name="pull", provider="aws")
    # the docker config names another registry: Flux's keychain is not anonymous, so Flux
    # does not use the provider either, and pulls anonymously
    assert resolver(kube, cloud).resolve(refs, ECR).credentials is ANONYMOUS
    assert cloud.asked == []


def test_pull_secrets_of_the_service_account_win_over_the_provider(kube: FakeKube) -> None:
    kube.secret("apps", "pull", {".dockerconfigjson": docker_config(ECR.registry)})
    kube.account("apps", "reader", ROLE, pull_secrets=["pull"])
    cloud = RecordingCloud()
    refs = AccessRefs("apps", service_account="reader", provider="aws")
    credentials = resolver(kube, cloud, object_level=True).resolve(refs, ECR).credentials
    assert (credentials.username, credentials.password) == ("u", "p")
    assert cloud.asked == [] and kube.tokens == []


def test_object_level_identity_needs_the_setting(kube: FakeKube) -> None:
    kube.account("apps", "reader", ROLE)
    refs = AccessRefs("apps", service_account="reader", provider="aws")
    with pytest.raises(AccessError, match="object_level_workload_identity") as caught:
        resolver(kube, RecordingCloud()).resolve(refs, ECR)
    assert caught.value.reason is ErrorReason.CONFIG
    assert "ObjectLevelWorkloadIdentity" in str(caught.value)
    assert kube.tokens == []


def test_object_level_identity_mints_a_token_with_the_audience(kube: FakeKube) -> None:
    kube.account("apps", "reader", ROLE)
    kube.account("other", "reader", ROLE)
    cloud = RecordingCloud()
    refs = AccessRefs("apps", service_account="reader", provider="aws")
    assert resolver(kube, cloud, object_level=True).resolve(refs, ECR).credentials is (
        CLOUD_CREDENTIALS
    )
    [(_, identity)] = cloud.asked
    assert identity is not None and str(identity) == "apps/reader"
    assert identity.annotations == ROLE
    token = identity.token("sts.amazonaws.com")
    assert token.count(".") == 2
    assert kube.tokens == [("apps", "reader", ["sts.amazonaws.com"])]


def test_token_request_refused(kube: FakeKube) -> None:
    kube.account("apps", "reader", ROLE)
    kube.token_status = 403
    cloud = RecordingCloud()
    refs = AccessRefs("apps", service_account="reader", provider="aws")
    resolver(kube, cloud, object_level=True).resolve(refs, ECR)
    [(_, identity)] = cloud.asked
    assert identity is not None
    with pytest.raises(CloudAuthError, match="create serviceaccounts/token"):
        identity.token("sts.amazonaws.com")


def test_missing_service_account(kube: FakeKube) -> None:
    refs = AccessRefs("apps", service_account="ghost", provider="aws")
    with pytest.raises(AccessError, match="service account apps/ghost not found"):
        resolver(kube, RecordingCloud(), object_level=True).resolve(refs, ECR)


def test_a_host_of_another_cloud_is_an_auth_failure(kube: FakeKube) -> None:
    cloud = RecordingCloud()
    refs = AccessRefs("apps", provider="gcp")
    with pytest.raises(AccessError, match="invalid GCP registry") as caught:
        resolver(kube, cloud).resolve(refs, ECR)
    assert caught.value.reason is ErrorReason.AUTH and cloud.asked == []


def test_cloud_failures_keep_their_reason(kube: FakeKube) -> None:
    class Refusing(RecordingCloud):
        def credentials(
            self, registry: CloudRegistry, identity: ObjectIdentity | None = None
        ) -> Credentials:
            raise CloudAuthError("AssumeRoleWithWebIdentity refused: AccessDenied")

    access = AccessResolver(kube.client(), clock=time.monotonic, cloud=Refusing())
    with pytest.raises(AccessError, match=r"spec.provider aws: AssumeRole") as caught:
        access.resolve(AccessRefs("apps", provider="aws"), ECR)
    assert caught.value.reason is ErrorReason.AUTH


def test_token_request_to_an_unreachable_api_server(kube: FakeKube) -> None:
    kube.account("apps", "reader", ROLE)
    cloud = RecordingCloud()
    refs = AccessRefs("apps", service_account="reader", provider="aws")
    resolver(kube, cloud, object_level=True).resolve(refs, ECR)
    [(_, identity)] = cloud.asked
    assert identity is not None
    kube.token_status = HANG_UP
    with pytest.raises(CloudUnavailable, match="the API server is unreachable"):
        identity.token("sts.amazonaws.com")


def lockdown(kube: FakeKube, cloud: RecordingCloud) -> AccessResolver:
    return AccessResolver(
        kube.client(), clock=time.monotonic, cloud=cloud, object_level_identity=True,
        default_service_account="flux-reader",
    )  # fmt: skip


def test_default_service_account_lockdown(kube: FakeKube) -> None:
    """Flux's --default-service-account: an object without serviceAccountName uses that
    account of its own namespace, never the exporter's identity."""
    kube.account("apps", "flux-reader", ROLE)
    cloud = RecordingCloud()
    lockdown(kube, cloud).resolve(AccessRefs("apps", provider="aws"), ECR)
    [(_, identity)] = cloud.asked
    assert identity is not None and str(identity) == "apps/flux-reader"
    with pytest.raises(AccessError, match="multi-tenant workload identity lockdown") as caught:
        lockdown(kube, cloud).resolve(AccessRefs("other", provider="aws"), ECR)
    assert caught.value.reason is ErrorReason.AUTH
    explicit = AccessRefs("other", service_account="ghost", provider="aws")
    with pytest.raises(AccessError, match="service account other/ghost not found"):
        lockdown(kube, cloud).resolve(explicit, ECR)


def test_a_helm_repository_always_uses_the_exporters_identity(kube: FakeKube) -> None:
    cloud = RecordingCloud()
    refs = AccessRefs("apps", basic_auth_keys=True, provider="aws", account_identity=False)
    lockdown(kube, cloud).resolve(refs, ECR)
    assert cloud.asked[0][1] is None and kube.tokens == []
