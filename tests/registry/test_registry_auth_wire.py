"""Token-auth wire cases played with httpx.MockTransport: refresh on invalid_token, no loop on
insufficient_scope, the OAuth2 fallback, the auth-failure breaker, and secrets never shown."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from exporter.model import Credentials, RepositoryRef
from exporter.registry.backoff import AuthBreaker, RetryPolicy
from exporter.registry.challenge import format_challenge
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryAuthBackoff, RegistryAuthError, RegistryError

REPO = RepositoryRef.parse("oci://registry.test/team/app")
REALM = "https://auth.test/token"
SECRETS = ("SECRET-pw", "SECRET-refresh", "SECRET-registrytoken", "SECRET-issued")


def challenge(error: str | None = None) -> dict[str, str]:
    params = {"realm": REALM, "service": "registry.test", "scope": "repository:team/app:pull"}
    if error:
        params["error"] = error
    return {"WWW-Authenticate": format_challenge("Bearer", params)}


class FakeTokenRegistry:
    """A registry plus token service; ``accept`` decides which bearer tokens the registry takes."""

    def __init__(self, accept: Callable[[str], bool], token_status: int = 200) -> None:
        self.accept = accept
        self.token_status = token_status
        self.issued = 0
        self.hits: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            self.hits[f"token-{request.method}"] += 1
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"details": "denied"})
            self.issued += 1
            return httpx.Response(200, json={"token": f"SECRET-issued-{self.issued}"})
        self.hits["registry"] += 1
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return httpx.Response(401, headers=challenge())
        if not self.accept(header.removeprefix("Bearer ")):
            return httpx.Response(401, headers=challenge("invalid_token"))
        return httpx.Response(200, json={"name": "team/app", "tags": ["1.0.0"]})


def client_for(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> RegistryClient:
    return RegistryClient(
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
        retry_policy=RetryPolicy(rng=lambda: 0.0),
        **kw,  # type: ignore[arg-type]
    )


def test_token_is_fetched_once_then_reused() -> None:
    fake = FakeTokenRegistry(accept=lambda token: True)
    with client_for(fake) as client:
        for _ in range(5):
            assert client.list_tags(REPO) == ["1.0.0"]
    assert fake.hits == {"token-GET": 1, "registry": 6}  # one 401 on first contact


def test_invalid_token_is_refreshed_once() -> None:
    fake = FakeTokenRegistry(accept=lambda token: token == "SECRET-issued-1")
    with client_for(fake) as client:
        client.list_tags(REPO)
        fake.accept = lambda token: token == "SECRET-issued-2"  # the registry revoked token 1
        assert client.list_tags(REPO) == ["1.0.0"]
        assert fake.hits["token-GET"] == 2
        fake.accept = lambda token: False  # nothing works any more: one refresh, then give up
        with pytest.raises(RegistryAuthError, match="rejected"):
            client.list_tags(REPO)
    assert fake.hits["token-GET"] == 3


def test_insufficient_scope_does_not_loop() -> None:
    hits: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        hits[request.url.host] += 1
        if request.url.host == "auth.test":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if "Authorization" not in request.headers:
            return httpx.Response(401, headers=challenge())
        return httpx.Response(401, headers=challenge("insufficient_scope"))

    with client_for(handler) as client, pytest.raises(RegistryAuthError, match="insufficient"):
        client.list_tags(REPO)
    assert hits == {"registry.test": 2, "auth.test": 1}


def test_identity_token_posts_refresh_grant_and_falls_back_to_get() -> None:
    fake = FakeTokenRegistry(accept=lambda token: True)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(404)
        return fake(request)

    creds = Credentials(username="<token>", identity_token="SECRET-refresh")
    with client_for(handler) as client:
        assert client.list_tags(REPO, creds) == ["1.0.0"]
    post = next(r for r in seen if r.method == "POST")
    assert b"grant_type=refresh_token" in post.content
    assert b"refresh_token=SECRET-refresh" in post.content
    assert fake.hits["token-GET"] == 1  # the fallback


def test_breaker_opens_after_repeated_failures_and_closes_after_cooldown() -> None:
    now = [1000.0]
    breaker = AuthBreaker(threshold=5, window=60, cooldown=300, clock=lambda: now[0])
    fake = FakeTokenRegistry(accept=lambda token: True, token_status=401)
    creds = Credentials("alice", "SECRET-pw")
    with client_for(fake, auth_breaker=breaker) as client:
        for _ in range(5):
            with pytest.raises(RegistryAuthError) as info:
                client.list_tags(REPO, creds)
            assert not isinstance(info.value, RegistryAuthBackoff)
        sent = fake.hits.total()
        with pytest.raises(RegistryAuthBackoff) as first:
            client.list_tags(REPO, creds)
        now[0] += 12
        with pytest.raises(RegistryAuthBackoff) as later:
            client.list_tags(REPO, creds)
        assert str(first.value) == str(later.value)  # stable: one Event, not one per check
        assert fake.hits.total() == sent  # nothing sent while open
        with pytest.raises(RegistryAuthError) as other:  # other credentials are still tried
            client.list_tags(REPO)
        assert not isinstance(other.value, RegistryAuthBackoff)
        assert fake.hits.total() > sent
        now[0] += 301
        fake.token_status = 200
        assert client.list_tags(REPO, creds) == ["1.0.0"]


SCENARIOS: dict[str, tuple[Callable[[httpx.Request], httpx.Response], Credentials]] = {
    "token refused": (
        FakeTokenRegistry(lambda t: True, token_status=403),
        Credentials("alice", "SECRET-pw"),
    ),
    "token rejected": (FakeTokenRegistry(lambda t: False), Credentials("alice", "SECRET-pw")),
    "refresh refused": (
        FakeTokenRegistry(lambda t: True, token_status=401),
        Credentials(username="u", identity_token="SECRET-refresh"),
    ),
    "registry token rejected": (
        FakeTokenRegistry(lambda t: False),
        Credentials(registry_token="SECRET-registrytoken"),
    ),
    "basic rejected": (
        lambda r: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'}),
        Credentials("alice", "SECRET-pw"),
    ),
    "server error": (lambda r: httpx.Response(500), Credentials("alice", "SECRET-pw")),
    "transport error": (
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")),
        Credentials(registry_token="SECRET-registrytoken"),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_secret_in_errors_or_logs(name: str, caplog: pytest.LogCaptureFixture) -> None:
    handler, creds = SCENARIOS[name]
    caplog.set_level(logging.DEBUG)
    with client_for(handler) as client, pytest.raises(RegistryError) as info:
        client.list_tags(REPO, creds)
    shown = [caplog.text, repr(creds), str(creds)]
    error: BaseException | None = info.value
    while error is not None:
        shown += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    for text in shown:
        for secret in SECRETS:
            assert secret not in text, (name, text)
