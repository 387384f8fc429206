"""``spec.provider: gcp``: the metadata server's token (a loopback stand-in, as
``GCE_METADATA_HOST`` points the Go client there) reaches a real registry (Debian's, behind
a token server) that accepts exactly ``oauth2accesstoken`` and that token; object-level
identity through stand-ins of Google's STS and IAM credentials endpoints, served over TLS
under their real names (``connect_to``) with a CA the client trusts as ``REQUESTS_CA_BUNDLE``
would make it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.push import Pusher
from devenv.registry import RunningRegistry, registry_binary, start_registry
from exporter.cloud.broker import CloudCredentials, ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.cloud.gcp import GcpIssuer
from exporter.cloud.http import CloudHTTP, ca_bundle
from exporter.flux.cloud import Provider, match_registry
from exporter.model import Credentials, RepositoryRef, TLSOptions
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryAuthError
from tests.fixtures.standin import Answer, Seen, StandIn, test_ca

HOST = "europe-docker.pkg.dev"
AR = match_registry(Provider.GCP, HOST)
TOKEN = "ya29.metadata-token-for-the-node"
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/userinfo.email"
)
EMAIL = "reader@my-project.iam.gserviceaccount.com"
POOL = "projects/1/locations/global/workloadIdentityPools/p/providers/x"


def metadata(seen: Seen) -> Answer:
    if seen.headers.get("metadata-flavor") != "Google":
        return Answer(403, "Missing Metadata-Flavor:Google header")
    if seen.path == "/computeMetadata/v1/instance/service-accounts/default/token":
        if seen.query.get("scopes") != [SCOPES]:
            return Answer(400, "scopes")
        return Answer(200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})
    answers = {
        "/computeMetadata/v1/project/project-id": "my-project",
        "/computeMetadata/v1/instance/attributes/cluster-location": "europe-west1",
        "/computeMetadata/v1/instance/attributes/cluster-name": "prod",
    }
    if seen.path in answers:
        return Answer(200, answers[seen.path])
    return Answer(404, "not found")


@pytest.fixture(scope="module")
def metadata_server() -> Iterator[StandIn]:
    with StandIn(metadata) as server:
        yield server


@pytest.fixture(scope="module")
def gar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    if registry_binary("debian") is None:
        pytest.skip("docker-registry is missing: run scripts/install-packages")
    workdir = tmp_path_factory.mktemp("gar")
    users = {"oauth2accesstoken": TOKEN}
    with start_registry(workdir, auth="token", users=users) as registry:
        with Pusher(registry.base_url, registry.push_headers("team/apps/web")) as push:
            push.flux_artifact("team/apps/web", "1.0.0")
        yield registry


@pytest.fixture
def http() -> Iterator[CloudHTTP]:
    client = CloudHTTP()
    yield client
    client.close()


def tags(registry: RunningRegistry, credentials: Credentials) -> list[str]:
    port = int(registry.host.rsplit(":", 1)[1])
    with RegistryClient(connect_to={(HOST, 80): ("127.0.0.1", port)}, retries=0) as client:
        return client.list_tags(RepositoryRef(HOST, "team/apps/web"), credentials, TLSOptions(True))


@pytest.mark.registry
def test_metadata_token_reaches_the_registry(
    metadata_server: StandIn, gar: RunningRegistry, http: CloudHTTP
) -> None:
    env = {"GCE_METADATA_HOST": f"127.0.0.1:{metadata_server.port}"}
    cloud = CloudCredentials({Provider.GCP: GcpIssuer(env, http)})
    credentials = cloud.credentials(AR)
    assert (credentials.username, credentials.password) == ("oauth2accesstoken", TOKEN)
    assert tags(gar, credentials) == ["1.0.0"]
    with pytest.raises(RegistryAuthError):
        tags(gar, Credentials("oauth2accesstoken", "ya29.another-token"))


def test_token_lifetime_comes_from_expires_in(metadata_server: StandIn, http: CloudHTTP) -> None:
    env = {"GCE_METADATA_HOST": f"127.0.0.1:{metadata_server.port}"}
    issued = GcpIssuer(env, http, clock=lambda: 1000.0).controller(AR)
    assert issued.expires_at == 1000.0 + 3599


def test_no_metadata_server(http: CloudHTTP) -> None:
    with StandIn(lambda seen: Answer(404, "no")) as nothing:
        env = {"GCE_METADATA_HOST": f"127.0.0.1:{nothing.port}"}
        with pytest.raises(CloudAuthError, match="no token for the default service account"):
            GcpIssuer(env, http).controller(AR)
    env = {"GCE_METADATA_HOST": "127.0.0.1:1"}  # nothing listens there
    with pytest.raises(CloudAuthError, match="no GCP credentials: GCE metadata server"):
        GcpIssuer(env, http).controller(AR)


class Google:
    """Stand-ins for sts.googleapis.com and iamcredentials.googleapis.com over TLS."""

    def __init__(self, directory: Path) -> None:
        self.ca = test_ca(directory, ["sts.googleapis.com", "iamcredentials.googleapis.com"])
        self.sts = StandIn(self._sts, tls=self.ca.tls)
        self.iam = StandIn(self._iam, tls=self.ca.tls)
        self.refuse = False

    def _sts(self, seen: Seen) -> Answer:
        form = seen.form()
        if self.refuse:
            description = f"bad audience for {form['subject_token']}"
            return Answer(400, {"error": "invalid_grant", "error_description": description})
        issued = "urn:ietf:params:oauth:token-type:access_token"
        return Answer(200, {"access_token": "federated-" + form["audience"][-8:],
                            "expires_in": 3600, "token_type": "Bearer",
                            "issued_token_type": issued})  # fmt: skip

    def _iam(self, seen: Seen) -> Answer:
        if not seen.headers.get("authorization", "").startswith("Bearer federated-"):
            return Answer(401, {"error": {"status": "UNAUTHENTICATED", "message": "no"}})
        return Answer(
            200, {"accessToken": "ya29.impersonated", "expireTime": "2099-01-01T00:00:00Z"}
        )

    def http(self) -> CloudHTTP:
        return CloudHTTP(
            ca_file=ca_bundle({"REQUESTS_CA_BUNDLE": str(self.ca.ca)}),
            connect_to={("sts.googleapis.com", 443): self.sts.address,
                        ("iamcredentials.googleapis.com", 443): self.iam.address},
        )  # fmt: skip

    def stop(self) -> None:
        self.sts.stop()
        self.iam.stop()


@pytest.fixture
def google(tmp_path: Path) -> Iterator[Google]:
    stand_ins = Google(tmp_path / "google")
    yield stand_ins
    stand_ins.stop()


def test_object_identity_on_gke_impersonates_the_annotated_account(
    google: Google, metadata_server: StandIn
) -> None:
    minted: list[str] = []

    def token(audience: str) -> str:
        minted.append(audience)
        return "k8s-sa-token"

    env = {"GCE_METADATA_HOST": f"127.0.0.1:{metadata_server.port}"}
    identity = ObjectIdentity("apps", "reader", {"iam.gke.io/gcp-service-account": EMAIL}, token)
    http = google.http()
    try:
        issued = GcpIssuer(env, http).for_account(AR, identity)
    finally:
        http.close()
    assert minted == ["my-project.svc.id.goog"]
    [exchange] = google.sts.seen
    form = exchange.form()
    assert form["audience"] == (
        "identitynamespace:my-project.svc.id.goog:https://container.googleapis.com/v1/projects"
        "/my-project/locations/europe-west1/clusters/prod"
    )
    assert form["subject_token"] == "k8s-sa-token"
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert form["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    [impersonation] = google.iam.seen
    assert impersonation.path == f"/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"
    assert impersonation.json() == {"scope": SCOPES.split(","), "lifetime": "3600s"}
    assert (issued.username, issued.password) == ("oauth2accesstoken", "ya29.impersonated")


def test_object_identity_through_a_workload_identity_provider(google: Google) -> None:
    provider = "projects/123/locations/global/workloadIdentityPools/pool/providers/kind"
    minted: list[str] = []

    def token(audience: str) -> str:
        minted.append(audience)
        return "k8s-sa-token"

    annotations = {"gcp.auth.fluxcd.io/workload-identity-provider": provider}
    identity = ObjectIdentity("apps", "reader", annotations, token)
    http = google.http()
    try:
        issued = GcpIssuer({}, http, clock=lambda: 0.0).for_account(AR, identity)
    finally:
        http.close()
    assert minted == [f"//iam.googleapis.com/{provider}"]
    form = google.sts.seen[0].form()
    assert form["audience"] == f"//iam.googleapis.com/{provider}"
    assert form["scope"] == SCOPES.replace(",", " ")
    assert google.iam.seen == []  # no account to impersonate: the federated token itself
    assert issued.password.startswith("federated-") and issued.expires_at == 3600


def test_external_account_configuration(google: Google, tmp_path: Path) -> None:
    subject = tmp_path / "subject"
    subject.write_text(json.dumps({"id_token": "oidc-from-elsewhere"}))
    config = tmp_path / "credentials.json"
    config.write_text(json.dumps({
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{POOL}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": str(subject),
                              "format": {"type": "json", "subject_token_field_name": "id_token"}},
        "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-"
                                             f"/serviceAccounts/{EMAIL}:generateAccessToken",
    }))  # fmt: skip
    http = google.http()
    try:
        issued = GcpIssuer({"GOOGLE_APPLICATION_CREDENTIALS": str(config)}, http).controller(AR)
    finally:
        http.close()
    assert google.sts.seen[0].form()["subject_token"] == "oidc-from-elsewhere"
    assert issued.password == "ya29.impersonated"


def test_service_account_keys_are_refused(tmp_path: Path, http: CloudHTTP) -> None:
    config = tmp_path / "key.json"
    config.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN"}))
    with pytest.raises(CloudAuthError, match="'service_account' is not supported"):
        GcpIssuer({"GOOGLE_APPLICATION_CREDENTIALS": str(config)}, http).controller(AR)


def test_refused_exchange_names_the_audience_not_the_token(google: Google) -> None:
    google.refuse = True
    provider = "projects/123/locations/global/workloadIdentityPools/pool/providers/kind"
    annotations = {"gcp.auth.fluxcd.io/workload-identity-provider": provider}
    identity = ObjectIdentity("apps", "reader", annotations, lambda audience: "secret-sa-token")
    http = google.http()
    try:
        with pytest.raises(CloudAuthError) as caught:
            GcpIssuer({}, http).for_account(AR, identity)
    finally:
        http.close()
    message = str(caught.value)
    assert provider in message and "invalid_grant" in message
    assert "secret-sa-token" not in message


def test_invalid_annotations(http: CloudHTTP) -> None:
    identity = ObjectIdentity(
        "apps", "reader", {"iam.gke.io/gcp-service-account": "me@gmail.com"}, lambda a: "t"
    )
    with pytest.raises(CloudAuthError, match=r"service account apps/reader: invalid iam\.gke\.io"):
        GcpIssuer({}, http).for_account(AR, identity)


def test_untrusted_certificate_is_refused(google: Google) -> None:
    http = CloudHTTP(connect_to={("sts.googleapis.com", 443): google.sts.address})
    provider = "projects/123/locations/global/workloadIdentityPools/pool/providers/kind"
    annotations = {"gcp.auth.fluxcd.io/workload-identity-provider": provider}
    identity = ObjectIdentity("apps", "reader", annotations, lambda audience: "t")
    try:
        with pytest.raises(
            CloudUnavailable, match=r"Google STS \(https://sts.googleapis.com:443\)"
        ):
            GcpIssuer({}, http).for_account(AR, identity)
    finally:
        http.close()


def test_an_unreadable_ca_bundle_fails_the_exchanges_only(tmp_path: Path) -> None:
    http = CloudHTTP(ca_file=ca_bundle({"SSL_CERT_FILE": str(tmp_path / "absent.pem")}))
    try:
        with pytest.raises(CloudAuthError, match=r"GCE metadata server: CA bundle .*absent"):
            GcpIssuer({"GCE_METADATA_HOST": "127.0.0.1:1"}, http).controller(AR)
    finally:
        http.close()
