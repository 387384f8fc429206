"""A hostile or broken registry, played on real sockets by ``FaultRegistry``: credentials stay
with the registry's origin and its https realm, auth denials are kept per repository, a
Retry-After holds a failure ten minutes at most, every exchange has a deadline and every
listing a size cap, nothing from the HTTP stack escapes, and digests are checked."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Iterator

import pytest

from devenv.pki import TlsFiles, write_tls
from exporter.model import ANONYMOUS, Credentials, RepositoryRef, TLSOptions
from exporter.registry.auth import basic_header
from exporter.registry.backoff import RetryPolicy
from exporter.registry.cache import TagCache
from exporter.registry.client import RegistryClient
from exporter.registry.errors import (
    RegistryAuthBackoff,
    RegistryAuthError,
    RegistryConfigError,
    RegistryError,
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnavailable,
)
from tests.fixtures.faultregistry import (
    Answer,
    FaultRegistry,
    Seen,
    TokenService,
    basic_challenge,
    bearer_challenge,
    endless_pages,
    json_answer,
    manifest_answer,
    rate_limited,
    sha256,
    tag_page,
)

PLAIN = TLSOptions(insecure=True)
TAGS = "/v2/team/app/tags/list"
PASSWORD = "SECRET-pw"
REGISTRY_TOKEN = "SECRET-registrytoken"
ALICE = Credentials("alice", PASSWORD)


def make_client(**kwargs: object) -> RegistryClient:
    """As the engine builds it: one quick retry, a 429 final at once."""
    return RegistryClient(
        retry_policy=RetryPolicy(retries=1, max_delay=0.01, retry_rate_limited=False),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def registry() -> Iterator[FaultRegistry]:
    with FaultRegistry() as server:
        yield server


@pytest.fixture
def foreign() -> Iterator[FaultRegistry]:
    """Another origin: whatever reaches it has left the registry."""
    with FaultRegistry() as server:
        server.route("/", tag_page("team/app", ["from-elsewhere"]), prefix=True)
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return write_tls(tmp_path_factory.mktemp("fault-tls"))


def repo_on(server: FaultRegistry, path: str = "team/app") -> RepositoryRef:
    return RepositoryRef(server.host, path)


def no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, REGISTRY_TOKEN, base64.b64encode(PASSWORD.encode()).decode()):
            assert secret not in text


# 1. Credentials follow a pagination Link to another origin


def _serve_first_page(registry: FaultRegistry, kind: str, next_link: str) -> Credentials:
    """Page 1 behind ``kind`` of auth, linking to ``next_link``; the credentials it takes."""
    page = tag_page("team/app", ["1.0.0"], next_link=next_link)
    if kind == "basic":
        expected = basic_header("alice", PASSWORD)

        def basic(seen: Seen) -> Answer:
            return page if seen.authorization == expected else basic_challenge()

        registry.route(TAGS, basic)
        return ALICE
    if kind == "bearer":
        tokens = TokenService(f"{registry.url}/token", users={"alice": PASSWORD}, anonymous=False)
        registry.route("/token", tokens.endpoint)
        registry.route(TAGS, tokens.protect("team/app", page))
        return ALICE
    realm = f"{registry.url}/token"

    def registry_token(seen: Seen) -> Answer:
        if seen.authorization == f"Bearer {REGISTRY_TOKEN}":
            return page
        return bearer_challenge(realm, "repository:team/app:pull")

    registry.route(TAGS, registry_token)
    return Credentials(registry_token=REGISTRY_TOKEN)


@pytest.mark.parametrize("kind", ["basic", "bearer", "registrytoken"])
def test_link_to_another_origin_is_refused_and_gets_no_credentials(
    registry: FaultRegistry, foreign: FaultRegistry, kind: str
) -> None:
    creds = _serve_first_page(registry, kind, f"{foreign.url}{TAGS}?last=1.0.0")
    with make_client() as client, pytest.raises(RegistryProtocolError) as info:
        client.list_tags(repo_on(registry), creds, PLAIN)
    message = str(info.value)
    assert message == (
        f"{registry.host}/team/app: the next page of tags is on another origin "
        f"(http://{foreign.host}); not followed"
    )
    assert foreign.requests() == []  # neither the credentials nor even the request
    assert registry.authorizations()  # the registry itself did get them
    no_secret(message, repr(info.value))


def test_link_to_the_same_host_over_another_scheme_is_refused(registry: FaultRegistry) -> None:
    creds = _serve_first_page(registry, "basic", f"https://{registry.host}{TAGS}?last=1.0.0")
    with make_client() as client, pytest.raises(RegistryProtocolError, match="another origin"):
        client.list_tags(repo_on(registry), creds, PLAIN)
    assert len(registry.requests()) == 2  # the challenge and page 1, nothing over https


def test_same_origin_links_are_still_followed(registry: FaultRegistry) -> None:
    def pages(seen: Seen) -> Answer:
        if seen.param("last"):
            return tag_page("team/app", ["b"])
        return tag_page("team/app", ["a"], next_link=f"{registry.url}{TAGS}?last=a")

    registry.route(TAGS, pages)
    with make_client() as client:
        assert client.list_tags(repo_on(registry), ANONYMOUS, PLAIN) == ["a", "b"]


def test_redirect_to_another_origin_that_challenges_gets_no_credentials(
    registry: FaultRegistry,
) -> None:
    with FaultRegistry() as hop:
        tokens = TokenService(f"{hop.url}/token", users={"alice": PASSWORD})
        hop.route("/token", tokens.endpoint)
        hop.route("/v2/x/tags/list", tokens.protect("x", tag_page("x", ["from-elsewhere"])))
        registry.route(TAGS, Answer(307, (("Location", f"{hop.url}/v2/x/tags/list"),)))
        with make_client() as client, pytest.raises(RegistryProtocolError) as info:
            client.list_tags(repo_on(registry), ALICE, PLAIN)
        assert str(info.value) == (
            f"{registry.host}/team/app: redirected to http://{hop.host}, which asks for "
            "credentials (HTTP 401); none are sent there"
        )
        assert hop.authorizations() == []
        assert [seen.path for seen in hop.requests()] == ["/v2/x/tags/list"]  # no token asked


def test_a_refresh_token_is_not_posted_on_through_a_redirect(
    registry: FaultRegistry, foreign: FaultRegistry
) -> None:
    """httpx drops Authorization on a cross-origin redirect, but a 307 re-sends the body."""
    refresh = "SECRET-refresh"
    registry.route("/token", Answer(307, (("Location", f"{foreign.url}/token"),)))
    registry.route(TAGS, bearer_challenge(f"{registry.url}/token", "repository:team/app:pull"))
    creds = Credentials(username="<token>", identity_token=refresh)
    with make_client() as client, pytest.raises(RegistryAuthError, match="HTTP 307"):
        client.list_tags(repo_on(registry), creds, PLAIN)
    assert [seen.method for seen in registry.requests()] == ["GET", "POST"]
    assert foreign.requests() == []


# 2. An http realm for an https registry


def test_plain_http_realm_of_an_https_registry_is_refused(tls_files: TlsFiles) -> None:
    with FaultRegistry(tls=tls_files) as registry, FaultRegistry() as realm:
        tokens = TokenService(f"{realm.url}/token", users={"alice": PASSWORD})
        realm.route("/token", tokens.endpoint)
        registry.route(TAGS, tokens.protect("team/app", tag_page("team/app", ["1.0.0"])))
        tls = TLSOptions(ca_pem=tls_files.ca.read_bytes())
        with make_client() as client, pytest.raises(RegistryProtocolError) as info:
            client.list_tags(repo_on(registry), ALICE, tls)
        assert str(info.value) == (
            f"{registry.host}: the token realm http://{realm.host} is plain HTTP while the "
            "registry is HTTPS; no credentials are sent and no token is asked there"
        )
        assert realm.requests() == []


def test_https_realm_elsewhere_still_gets_the_credentials(tls_files: TlsFiles) -> None:
    """What Docker's clients do, and what GitLab (realm on the GitLab host) needs."""
    with FaultRegistry(tls=tls_files) as registry, FaultRegistry(tls=tls_files) as realm:
        tokens = TokenService(f"{realm.url}/token", users={"alice": PASSWORD}, anonymous=False)
        realm.route("/token", tokens.endpoint)
        registry.route(TAGS, tokens.protect("team/app", tag_page("team/app", ["1.0.0"])))
        tls = TLSOptions(ca_pem=tls_files.ca.read_bytes())
        with make_client() as client:
            assert client.list_tags(repo_on(registry), ALICE, tls) == ["1.0.0"]
        assert realm.authorizations() == [basic_header("alice", PASSWORD)]


def test_plain_http_registry_may_use_a_plain_http_realm(registry: FaultRegistry) -> None:
    tokens = TokenService(f"{registry.url}/token", users={"alice": PASSWORD})
    registry.route("/token", tokens.endpoint)
    registry.route(TAGS, tokens.protect("team/app", tag_page("team/app", ["1.0.0"])))
    with make_client() as client:
        assert client.list_tags(repo_on(registry), ALICE, PLAIN) == ["1.0.0"]


# 4. The auth breaker: per repository for denials, per registry for bad credentials

# how each repository is refused: by the registry ("deny": 403 or "scope" for a 401
# insufficient_scope) or by the token service ("refuse": the status it answers)
DENIALS: dict[str, tuple[str, int | str, str]] = {
    "403 with a valid token": ("deny", 403, "access denied"),
    "insufficient_scope": ("deny", "scope", "insufficient_scope"),
    "token service refuses the scope (403)": ("refuse", 403, "refused pull access"),
    "token service refuses an anonymous caller (401)": ("refuse", 401, "refused pull access"),
}


def _tenants(registry: FaultRegistry, denied: list[str], by: str = "", how: int | str = 0) -> None:
    """Token auth; ``denied`` repositories refused as DENIALS says, "other/public" readable."""
    refuse = {f"repository:{path}:pull": int(how) for path in denied if by == "refuse"}
    deny = {path: how for path in denied if by == "deny"}
    tokens = TokenService(
        f"{registry.url}/token", users={"alice": PASSWORD}, refuse=refuse, deny=deny
    )
    registry.route("/token", tokens.endpoint)
    for path in [*denied, "other/public"]:
        registry.route(f"/v2/{path}/tags/list", tokens.protect(path, tag_page(path, ["1.0.0"])))


@pytest.mark.parametrize("denial", sorted(DENIALS))
def test_denied_repositories_do_not_silence_the_registry(
    registry: FaultRegistry, denial: str
) -> None:
    by, how, message = DENIALS[denial]
    denied = [f"tenant-a/private-{i}" for i in range(5)]
    _tenants(registry, denied, by, how)
    with make_client() as client:
        for path in denied:
            with pytest.raises(RegistryAuthError, match=message) as info:
                client.list_tags(repo_on(registry, path), ANONYMOUS, PLAIN)
            assert not isinstance(info.value, RegistryAuthBackoff)
        # another tenant's public repository, anonymous too: still asked, still answered
        assert client.list_tags(repo_on(registry, "other/public"), ANONYMOUS, PLAIN) == ["1.0.0"]


@pytest.mark.parametrize("denial", sorted(DENIALS))
def test_a_repository_denied_five_times_is_not_asked_for_a_while(
    registry: FaultRegistry, denial: str
) -> None:
    by, how, _ = DENIALS[denial]
    denied = "tenant-a/private"
    _tenants(registry, [denied], by, how)
    with make_client() as client:
        for _ in range(5):
            with pytest.raises(RegistryAuthError) as info:
                client.list_tags(repo_on(registry, denied), ANONYMOUS, PLAIN)
            assert not isinstance(info.value, RegistryAuthBackoff)
        sent = len(registry.requests())
        with pytest.raises(RegistryAuthBackoff) as backoff:
            client.list_tags(repo_on(registry, denied), ANONYMOUS, PLAIN)
        assert str(backoff.value) == (
            f"{registry.host}/{denied}: not asked for a while after repeated access denials"
        )
        assert len(registry.requests()) == sent
        # the same repository with other credentials, and other repositories, still go
        with pytest.raises(RegistryAuthError) as other:
            client.list_tags(repo_on(registry, denied), ALICE, PLAIN)
        assert not isinstance(other.value, RegistryAuthBackoff)
        assert client.list_tags(repo_on(registry, "other/public"), ANONYMOUS, PLAIN) == ["1.0.0"]


def test_a_refused_password_silences_those_credentials_on_the_whole_registry(
    registry: FaultRegistry,
) -> None:
    paths = [f"team/app-{i}" for i in range(6)]
    _tenants(registry, paths)
    wrong = Credentials("alice", "not-the-password")
    with make_client() as client:
        for path in paths[:5]:
            with pytest.raises(RegistryAuthError, match="refused the credentials") as info:
                client.list_tags(repo_on(registry, path), wrong, PLAIN)
            assert not isinstance(info.value, RegistryAuthBackoff)
        sent = len(registry.requests())
        with pytest.raises(RegistryAuthBackoff, match="not contacted for a while"):
            client.list_tags(repo_on(registry, paths[5]), wrong, PLAIN)  # never tried before
        assert len(registry.requests()) == sent
        assert client.list_tags(repo_on(registry, paths[5]), ALICE, PLAIN) == ["1.0.0"]
        assert client.list_tags(repo_on(registry, paths[5]), ANONYMOUS, PLAIN) == ["1.0.0"]


# 5. Retry-After holds a failure ten minutes at most


def test_retry_after_is_honoured_up_to_ten_minutes(
    registry: FaultRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    limited = [True]
    registry.route(
        TAGS,
        lambda _: rate_limited("999999") if limited[0] else tag_page("team/app", ["1.0.0"]),
    )
    now = [1000.0]
    caplog.set_level(logging.DEBUG, logger="exporter.registry.cache")
    with make_client() as client:
        cache = TagCache(client, ttl=60, clock=lambda: now[0])
        with pytest.raises(RegistryRateLimited) as info:
            cache.tags(repo_on(registry), ANONYMOUS, PLAIN)
        assert info.value.retry_after == 999999
        limited[0] = False
        now[0] += 599
        with pytest.raises(RegistryRateLimited):  # held: longer than the TTL
            cache.tags(repo_on(registry), ANONYMOUS, PLAIN)
        assert len(registry.requests()) == 1
        now[0] += 2
        assert cache.tags(repo_on(registry), ANONYMOUS, PLAIN).tags == ("1.0.0",)
    assert len(registry.requests()) == 2
    [record] = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert record.getMessage().endswith("Retry-After asked 999999s, honoured 600s")


def test_short_retry_after_beyond_the_ttl_is_honoured_in_full(registry: FaultRegistry) -> None:
    registry.route(TAGS, rate_limited("120"))
    now = [1000.0]
    with make_client() as client:
        cache = TagCache(client, ttl=60, clock=lambda: now[0], max_retry_after=600)
        for step in (0, 119):
            now[0] += step
            with pytest.raises(RegistryRateLimited):
                cache.tags(repo_on(registry), ANONYMOUS, PLAIN)
        assert len(registry.requests()) == 1
        now[0] += 2
        with pytest.raises(RegistryRateLimited):
            cache.tags(repo_on(registry), ANONYMOUS, PLAIN)
    assert len(registry.requests()) == 2


# 6. A deadline per exchange, a size cap per listing

BODY = json.dumps({"name": "team/app", "tags": ["1.0.0", "1.1.0", "2.0.0"]}).encode()


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, (("Content-Type", "application/json"),), BODY, drip=0.02),
        Answer(200, (("X-Padding", "p" * 60),), BODY, drip=0.02, drip_headers=True),
        Answer(200, (), b'{"name": "team/app", "tags": [', drip=0.01, endless=True),
    ],
    ids=["body", "headers", "endless"],
)
@pytest.mark.timeout(20)
def test_a_dripping_answer_ends_at_the_deadline(registry: FaultRegistry, answer: Answer) -> None:
    registry.route(TAGS, answer)
    started = time.monotonic()
    with make_client(deadline=0.3) as client, pytest.raises(RegistryUnavailable) as info:
        client.list_tags(repo_on(registry), ANONYMOUS, PLAIN)
    took = time.monotonic() - started
    assert str(info.value) == f"{registry.host}: no complete answer within the 0.3s deadline"
    assert 0.25 < took < 1.0  # one attempt: a registry this slow is as slow again
    assert len(registry.requests()) == 1


def test_the_deadline_defaults_to_thirty_seconds() -> None:
    assert inspect.signature(RegistryClient).parameters["deadline"].default == 30.0


def test_a_quick_answer_is_not_cut(registry: FaultRegistry) -> None:
    registry.route(TAGS, Answer(200, (), BODY, drip=0.001))
    with make_client(deadline=5) as client:
        assert client.list_tags(repo_on(registry), ANONYMOUS, PLAIN) == ["1.0.0", "1.1.0", "2.0.0"]


def test_the_listing_is_capped_over_all_its_pages(registry: FaultRegistry) -> None:
    registry.route(TAGS, endless_pages("team/app", 64 << 10))
    with (
        make_client(max_listing_bytes=256 << 10) as client,
        pytest.raises(RegistryProtocolError) as info,
    ):
        client.list_tags(repo_on(registry), ANONYMOUS, PLAIN)
    assert str(info.value) == (
        f"{registry.host}/team/app: the tag listing exceeds the 262144 byte cap over all its pages"
    )
    assert len(registry.requests()) <= 5


def test_one_page_beyond_its_own_cap_is_still_named_as_such(registry: FaultRegistry) -> None:
    registry.route(TAGS, endless_pages("team/app", 64 << 10))
    cap = pytest.raises(RegistryProtocolError, match="exceeds the 16384 byte cap")
    with make_client(max_response_bytes=16 << 10) as client, cap:
        client.list_tags(repo_on(registry), ANONYMOUS, PLAIN)


# 7. Nothing from the HTTP stack leaves the package

# (host, path); "{host}" is the fault registry's 127.0.0.1:<port>
BAD_REPOSITORIES = {
    "newline in the path": ("{host}", "team/a\npp"),
    "NUL in the path": ("{host}", "team/a\x00pp"),
    "DEL in the host": ("{host}\x7f", "team/app"),
    "lone surrogate in the path": ("{host}", "team/\udcff"),
    "empty DNS label": ("a..b", "team/app"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPOSITORIES))
def test_a_repository_url_no_request_can_carry_is_a_config_error(
    registry: FaultRegistry, case: str
) -> None:
    host, path = BAD_REPOSITORIES[case]
    repo = RepositoryRef(host.format(host=registry.host), path)
    with make_client() as client:
        for call in (
            lambda: client.list_tags(repo, ALICE, PLAIN),
            lambda: client.resolve_digest(repo, "1.0.0", ALICE, PLAIN),
            lambda: client.manifest_created(repo, sha256(b"{}"), ALICE, PLAIN),
        ):
            with pytest.raises(RegistryConfigError) as info:
                call()
            assert info.value.reason == "config"
            assert "not a URL an HTTP request can carry" in str(info.value)
            assert str(info.value).isprintable()
    assert registry.requests() == []


def test_a_tag_with_a_line_break_is_a_config_error(registry: FaultRegistry) -> None:
    with make_client() as client, pytest.raises(RegistryConfigError):
        client.resolve_digest(repo_on(registry), "v1\r\nX-Injected: 1", ANONYMOUS, PLAIN)
    assert registry.requests() == []


@pytest.mark.parametrize("token", ["SECRET-registrytoken\n", "SECRET-registrytök"])
def test_a_registry_token_no_header_can_carry_is_a_config_error(
    registry: FaultRegistry, token: str
) -> None:
    registry.route(TAGS, tag_page("team/app", ["1.0.0"]))
    with make_client() as client, pytest.raises(RegistryConfigError) as info:
        client.list_tags(repo_on(registry), Credentials(registry_token=token), PLAIN)
    assert str(info.value) == (
        f"{registry.host}: the registry token has characters no HTTP header can carry"
    )
    assert registry.requests() == []


def test_an_unusable_ca_bundle_is_a_config_error(registry: FaultRegistry) -> None:
    tls = TLSOptions(ca_pem=b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with make_client() as client, pytest.raises(RegistryConfigError, match="TLS settings"):
        client.list_tags(repo_on(registry), ANONYMOUS, tls)
    assert registry.requests() == []


def test_answers_that_break_url_parsing_are_protocol_errors(registry: FaultRegistry) -> None:
    registry.route(TAGS, tag_page("team/app", ["a"], next_link="http://127.0.0.1:port/x"))
    registry.route("/v2/bad/realm/tags/list", bearer_challenge("http://127.0.0.1:port/token", "s"))
    registry.route("/v2/ftp/tags/list", Answer(302, (("Location", "ftp://127.0.0.1/x"),)))
    registry.route("/v2/token/newline/tags/list", bearer_challenge(f"{registry.url}/t", "s"))
    registry.route("/t", json_answer({"token": "a\nb"}))
    expected = {
        "team/app": "unusable tag pagination link",
        "bad/realm": "the token realm is not a valid URL",
        "ftp": "redirected to a URL that is not http(s)",
        "token/newline": "token endpoint returned a token no HTTP header can carry",
    }
    for path, message in expected.items():
        with make_client() as client, pytest.raises(RegistryProtocolError) as info:
            client.list_tags(repo_on(registry, path), ANONYMOUS, PLAIN)
        assert str(info.value).endswith(message), path


def test_nothing_but_registry_errors_leave_the_client(registry: FaultRegistry) -> None:
    """A sweep over hostile answers: each ends as a RegistryError, its cause chained."""
    hostile = {
        "garbage status line": Answer(200, (("X", "y\r\nHTTP/9 bad"),), b"{}"),
        "bad gzip": Answer(200, (("Content-Encoding", "gzip"),), b"not gzip at all"),
        "redirect loop": Answer(307, (("Location", "?again"),)),
        "short body": Answer(200, (("Content-Length", "100"),), b"{}"),
    }
    with make_client() as client:
        for name, answer in hostile.items():
            path = "hostile/" + name.replace(" ", "-")
            registry.route(f"/v2/{path}/tags/list", answer)
            with pytest.raises(RegistryError) as info:
                client.list_tags(repo_on(registry, path), ANONYMOUS, PLAIN)
            assert info.value.reason in ("protocol", "unavailable"), name
            assert info.value.__cause__ is not None, name


# 11. Digests


MANIFEST = json.dumps({"schemaVersion": 2, "annotations": {}}).encode()
MANIFESTS = "/v2/team/app/manifests/"


def _sha512(body: bytes) -> str:
    return "sha512:" + hashlib.sha512(body).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        "sha256:" + "z" * 64,
        "sha256:" + sha256(MANIFEST)[7:].upper(),
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
    ],
)
def test_malformed_digest_headers_are_refused(registry: FaultRegistry, header: str) -> None:
    registry.route(MANIFESTS, manifest_answer(MANIFEST, header), prefix=True)
    with make_client() as client, pytest.raises(RegistryProtocolError, match="not sha256"):
        client.resolve_digest(repo_on(registry), "1.0.0", ANONYMOUS, PLAIN)


def test_sha512_digests_are_accepted_and_checked(registry: FaultRegistry) -> None:
    registry.route(MANIFESTS, manifest_answer(MANIFEST, _sha512(MANIFEST)), prefix=True)
    with make_client() as client:
        assert client.resolve_digest(repo_on(registry), "1.0.0", ANONYMOUS, PLAIN) == _sha512(
            MANIFEST
        )
        assert (
            client.manifest_created(repo_on(registry), _sha512(MANIFEST), ANONYMOUS, PLAIN) is None
        )


def test_a_fetched_body_must_match_its_digest_header(registry: FaultRegistry) -> None:
    lying = sha256(b"another manifest")

    def head_without_digest(seen: Seen) -> Answer:
        return manifest_answer(MANIFEST, None if seen.method == "HEAD" else lying)

    registry.route(MANIFESTS, head_without_digest, prefix=True)
    with make_client() as client:
        with pytest.raises(RegistryProtocolError) as info:
            client.resolve_digest(repo_on(registry), "1.0.0", ANONYMOUS, PLAIN)
        assert str(info.value) == (
            f"{registry.host}/team/app: Docker-Content-Digest of 1.0.0 does not match the "
            "manifest sent"
        )
        with pytest.raises(RegistryProtocolError, match="does not match"):
            client.manifest_created(repo_on(registry), sha256(MANIFEST), ANONYMOUS, PLAIN)
    assert [seen.method for seen in registry.requests()] == ["HEAD", "GET", "GET"]


def test_a_fetched_body_with_a_matching_header_or_none_is_its_digest(
    registry: FaultRegistry,
) -> None:
    headers = iter([None, None, sha256(MANIFEST)])
    registry.route(MANIFESTS, lambda _: manifest_answer(MANIFEST, next(headers)), prefix=True)
    with make_client() as client:
        assert client.resolve_digest(repo_on(registry), "1.0.0", ANONYMOUS, PLAIN) == sha256(
            MANIFEST
        )
        assert (
            client.manifest_created(repo_on(registry), sha256(MANIFEST), ANONYMOUS, PLAIN) is None
        )


def test_fault_registry_serves_tls(tls_files: TlsFiles) -> None:
    """The fixture itself: TLS on loopback with the CA from ``write_tls``."""
    with FaultRegistry(tls=tls_files) as registry:
        registry.route(TAGS, tag_page("team/app", ["1.0.0"]))
        tls = TLSOptions(ca_pem=tls_files.ca.read_bytes())
        with make_client() as client:
            assert client.list_tags(repo_on(registry), ANONYMOUS, tls) == ["1.0.0"]
        with make_client() as client, pytest.raises(RegistryUnavailable, match="certificate"):
            client.list_tags(repo_on(registry), ANONYMOUS, TLSOptions())


def test_json_nested_beyond_reason_is_a_protocol_error() -> None:
    from exporter.core.hooks import HookSource, InvalidEvent, parse
    from exporter.registry.client import _page_tags
    from exporter.registry.dockerconfig import DockerConfigError
    from exporter.registry.dockerconfig import parse as parse_docker_config
    from exporter.registry.errors import RegistryProtocolError

    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RegistryProtocolError, match="not valid JSON"):
        _page_tags(RepositoryRef("r.example", "app"), deep)
    with pytest.raises(DockerConfigError):
        parse_docker_config(deep)
    with pytest.raises(InvalidEvent):
        parse(HookSource.DISTRIBUTION, deep, "", "registry.gitlab.com")
