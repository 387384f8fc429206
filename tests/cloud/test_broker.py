"""The cloud credentials cache: per (provider, identity, registry key), 80 % of a token's
lifetime and at most an hour, failures remembered briefly, no secret in a repr."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from exporter.cloud.broker import CloudCredentials, Issued, ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.flux.cloud import CloudRegistry, Provider, match_registry
from exporter.model import ErrorReason

ECR = match_registry(Provider.AWS, "123456789012.dkr.ecr.eu-west-1.amazonaws.com")
ECR_OTHER_ACCOUNT = match_registry(Provider.AWS, "210987654321.dkr.ecr.eu-west-1.amazonaws.com")
ECR_US = match_registry(Provider.AWS, "123456789012.dkr.ecr.us-east-1.amazonaws.com")
ROLE = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/reader"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeIssuer:
    def __init__(self, clock: Clock, lifetime: float = 12 * 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[str, str | None]] = []
        self.fail: Exception | None = None

    def _issue(self, registry: CloudRegistry, who: str | None) -> Issued:
        self.calls.append((registry.key, who))
        if self.fail is not None:
            raise self.fail
        return Issued("AWS", f"password-{len(self.calls)}", self.clock.now + self.lifetime)

    def controller(self, registry: CloudRegistry) -> Issued:
        return self._issue(registry, None)

    def for_account(self, registry: CloudRegistry, identity: ObjectIdentity) -> Issued:
        return self._issue(registry, str(identity))


def account(namespace: str, name: str, annotations: Mapping[str, str] = ROLE) -> ObjectIdentity:
    return ObjectIdentity(namespace, name, annotations, lambda audience: "sa-token")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_reused_for_80_percent_of_the_lifetime_at_most_an_hour(clock: Clock) -> None:
    issuer = FakeIssuer(clock, lifetime=1000)
    cloud = CloudCredentials({Provider.AWS: issuer}, clock=clock)
    first = cloud.credentials(ECR)
    assert (first.username, first.password) == ("AWS", "password-1")
    clock.now += 799
    assert cloud.credentials(ECR).password == "password-1"
    clock.now += 2
    assert cloud.credentials(ECR).password == "password-2"
    issuer.lifetime = 12 * 3600  # an ECR token: cached for an hour, not 9.6 hours
    clock.now += 801
    assert cloud.credentials(ECR).password == "password-3"
    clock.now += 3599
    assert cloud.credentials(ECR).password == "password-3"
    clock.now += 2
    assert cloud.credentials(ECR).password == "password-4"


def test_keyed_by_region_and_identity(clock: Clock) -> None:
    issuer = FakeIssuer(clock)
    cloud = CloudCredentials({Provider.AWS: issuer}, clock=clock)
    cloud.credentials(ECR)
    cloud.credentials(ECR_OTHER_ACCOUNT)  # same region: Flux's key, one token
    cloud.credentials(ECR_US)
    cloud.credentials(ECR, account("apps", "reader"))
    cloud.credentials(ECR, account("apps", "reader"))
    cloud.credentials(ECR, account("other", "reader"))  # another namespace's identity
    other_role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/writer"}
    cloud.credentials(ECR, account("apps", "reader", other_role))  # annotation changed
    assert issuer.calls == [
        ("eu-west-1", None),
        ("us-east-1", None),
        ("eu-west-1", "apps/reader"),
        ("eu-west-1", "other/reader"),
        ("eu-west-1", "apps/reader"),
    ]


def test_fingerprint_is_the_identity_not_the_rotating_password(clock: Clock) -> None:
    issuer = FakeIssuer(clock, lifetime=100)
    cloud = CloudCredentials({Provider.AWS: issuer}, clock=clock)
    first = cloud.credentials(ECR)
    clock.now += 90
    second = cloud.credentials(ECR)
    assert first.password != second.password
    assert first.fingerprint() == second.fingerprint()
    assert cloud.credentials(ECR_US).fingerprint() != first.fingerprint()
    mine = cloud.credentials(ECR, account("apps", "reader"))
    theirs = cloud.credentials(ECR, account("other", "reader"))
    assert len({first.fingerprint(), mine.fingerprint(), theirs.fingerprint()}) == 3
    assert "password" not in repr(first) and first.kind == "basic"


def test_failures_are_remembered_briefly(clock: Clock) -> None:
    issuer = FakeIssuer(clock)
    issuer.fail = CloudAuthError("role arn:aws:iam::1:role/r refused: AccessDenied")
    cloud = CloudCredentials({Provider.AWS: issuer}, clock=clock, failure_ttl=30)
    for _ in range(3):
        with pytest.raises(CloudAuthError, match="AccessDenied") as caught:
            cloud.credentials(ECR)
        assert caught.value.reason is ErrorReason.AUTH
    assert len(issuer.calls) == 1
    issuer.fail = CloudUnavailable("sts: HTTP 503")
    clock.now += 31
    with pytest.raises(CloudUnavailable) as unavailable:
        cloud.credentials(ECR)
    assert unavailable.value.reason is ErrorReason.UNAVAILABLE
    issuer.fail = None
    clock.now += 31
    assert cloud.credentials(ECR).password == "password-3"


def test_no_issuer_for_the_provider(clock: Clock) -> None:
    cloud = CloudCredentials({}, clock=clock)
    with pytest.raises(CloudAuthError, match="'aws': not configured"):
        cloud.credentials(ECR)


def test_concurrent_misses_make_one_exchange(clock: Clock) -> None:
    issuer = FakeIssuer(clock)
    gate = threading.Event()
    original = issuer.controller

    def slow(registry: CloudRegistry) -> Issued:
        gate.wait(5)
        return original(registry)

    issuer.controller = slow  # type: ignore[method-assign]
    cloud = CloudCredentials({Provider.AWS: issuer}, clock=clock)
    threads = [threading.Thread(target=cloud.credentials, args=(ECR,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(issuer.calls) == 1
