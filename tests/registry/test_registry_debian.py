"""The client against Debian's docker-registry (distribution 2.8) in each auth mode."""

from __future__ import annotations

import httpx
import pytest

from devenv.push import Pushed, Pusher
from devenv.registry import RunningRegistry
from exporter.model import ANONYMOUS, Credentials, RepositoryRef
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryAuthError, RegistryNotFound

from .conftest import PLAIN_HTTP, REFRESH_TOKEN, USERS, RecordingObserver

pytestmark = pytest.mark.registry

NESTED = "group/sub/project/app"  # GitLab-style nested path
CREATED = {"1.0.0": 1_700_000_000, "1.1.0": 1_700_000_600, "2.0.0-rc.1": 1_700_001_200}


@pytest.fixture(scope="module")
def credentials(debian_registry: RunningRegistry) -> Credentials:
    return ANONYMOUS if debian_registry.auth == "none" else Credentials("alice", USERS["alice"])


@pytest.fixture(scope="module")
def pushed(debian_registry: RunningRegistry) -> dict[str, Pushed]:
    with Pusher(debian_registry.base_url, debian_registry.push_headers(NESTED)) as pusher:
        return {
            tag: pusher.flux_artifact(NESTED, tag, created=created)
            for tag, created in CREATED.items()
        }


def repo(registry: RunningRegistry, path: str = NESTED) -> RepositoryRef:
    return RepositoryRef.parse(f"oci://{registry.host}/{path}")


def test_lists_resolves_and_dates_pushed_artifacts(
    debian_registry: RunningRegistry, credentials: Credentials, pushed: dict[str, Pushed]
) -> None:
    with RegistryClient() as client:
        tags = client.list_tags(repo(debian_registry), credentials, PLAIN_HTTP)
        assert sorted(tags) == sorted(CREATED)
        for tag, artifact in pushed.items():
            digest = client.resolve_digest(repo(debian_registry), tag, credentials, PLAIN_HTTP)
            assert digest == artifact.digest
            created = client.manifest_created(
                repo(debian_registry), digest, credentials, PLAIN_HTTP
            )
            assert created == CREATED[tag]


def test_token_is_reused_without_extra_round_trips(
    debian_registry: RunningRegistry, credentials: Credentials, pushed: dict[str, Pushed]
) -> None:
    observer = RecordingObserver()
    before = debian_registry.token_server.requests if debian_registry.token_server else 0
    with RegistryClient(observer=observer) as client:
        for _ in range(5):
            assert len(client.list_tags(repo(debian_registry), credentials, PLAIN_HTTP)) == 3
        client.resolve_digest(repo(debian_registry), "1.0.0", credentials, PLAIN_HTTP)
    registry_requests = observer.total(debian_registry.host)
    if debian_registry.token_server is not None:
        assert debian_registry.token_server.requests - before == 1
        # one 401 on first contact, one token request, then six authorised requests
        assert registry_requests == 8
    elif credentials is not ANONYMOUS:
        assert registry_requests == 7  # one 401 teaches the client to send Basic
    else:
        assert registry_requests == 6


def test_wrong_password_is_an_auth_error(
    debian_registry: RunningRegistry, credentials: Credentials, pushed: dict[str, Pushed]
) -> None:
    if credentials is ANONYMOUS:
        pytest.skip("this registry accepts anyone")
    with RegistryClient() as client, pytest.raises(RegistryAuthError) as info:
        client.list_tags(repo(debian_registry), Credentials("alice", "nope"), PLAIN_HTTP)
    assert "nope" not in str(info.value)


def test_anonymous_is_refused_when_auth_is_on(
    debian_registry: RunningRegistry, credentials: Credentials, pushed: dict[str, Pushed]
) -> None:
    if credentials is ANONYMOUS:
        pytest.skip("this registry accepts anyone")
    before = debian_registry.token_server.requests if debian_registry.token_server else 0
    with RegistryClient() as client, pytest.raises(RegistryAuthError):
        client.list_tags(repo(debian_registry), ANONYMOUS, PLAIN_HTTP)
    if debian_registry.token_server is not None:
        # an anonymous token without access: insufficient_scope, and no second token request
        assert debian_registry.token_server.requests - before == 1


def test_identity_and_registry_tokens(
    debian_registry: RunningRegistry, pushed: dict[str, Pushed]
) -> None:
    server = debian_registry.token_server
    if server is None:
        pytest.skip("identity and registry tokens need token auth")
    with RegistryClient() as client:
        refresh = Credentials(username="<token>", identity_token=REFRESH_TOKEN)
        posts = server.counts["post"]
        assert len(client.list_tags(repo(debian_registry), refresh, PLAIN_HTTP)) == 3
        assert server.counts["post"] == posts + 1  # the OAuth2 refresh-token grant
        minted = server.mint("alice", [f"repository:{NESTED}:pull"])
        before = server.requests
        as_is = Credentials(registry_token=minted)
        assert len(client.list_tags(repo(debian_registry), as_is, PLAIN_HTTP)) == 3
        assert server.requests == before  # sent as-is, no token request


def test_missing_repository_and_tag(
    debian_registry: RunningRegistry, credentials: Credentials, pushed: dict[str, Pushed]
) -> None:
    with RegistryClient() as client:
        with pytest.raises(RegistryNotFound):
            client.list_tags(repo(debian_registry, "group/absent"), credentials, PLAIN_HTTP)
        with pytest.raises(RegistryNotFound):
            client.resolve_digest(repo(debian_registry), "9.9.9", credentials, PLAIN_HTTP)


def test_repository_whose_only_tag_was_deleted_is_empty(
    debian_registry: RunningRegistry, credentials: Credentials
) -> None:
    path = "group/emptied"
    headers = debian_registry.push_headers(path)
    with Pusher(debian_registry.base_url, headers) as pusher:
        artifact = pusher.flux_artifact(path, "0.1.0")
    deleted = httpx.delete(
        f"{debian_registry.base_url}/v2/{path}/manifests/{artifact.digest}", headers=headers
    )
    assert deleted.status_code == 202
    with RegistryClient() as client:
        assert client.list_tags(repo(debian_registry, path), credentials, PLAIN_HTTP) == []
