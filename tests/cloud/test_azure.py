"""``spec.provider: azure``: a federated token file exchanged at a stand-in of Entra ID's
token endpoint, the access token exchanged at a stand-in of the registry's
``/oauth2/exchange``, both over TLS under their real names (``connect_to``, a CA trusted as
``REQUESTS_CA_BUNDLE`` would make it), and the refresh token accepted by a real registry
(Debian's, behind a token server) as the password of ``00000000-…`` and nothing else."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.push import Pusher
from devenv.registry import RunningRegistry, registry_binary, start_registry
from exporter.cloud.azure import AzureIssuer, jwt_expiry
from exporter.cloud.broker import CloudCredentials, ObjectIdentity
from exporter.cloud.errors import CloudAuthError
from exporter.cloud.http import CloudHTTP, ca_bundle
from exporter.flux.cloud import CloudMismatch, Provider, match_registry
from exporter.model import Credentials, RepositoryRef, TLSOptions
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryAuthError
from tests.fixtures.standin import Answer, Seen, StandIn, jwt_unsigned, test_ca

HOST = "fluxteam.azurecr.io"
ACR = match_registry(Provider.AZURE, HOST)
USER = "00000000-0000-0000-0000-000000000000"
TENANT, CLIENT = "72f988bf-86f1-41af-91ab-2d7cd011db47", "4d1e7a52-6f0c-4c3e-9b1a-0123456789ab"
EXPIRES = int(time.time()) + 3 * 3600
REFRESH = jwt_unsigned({"exp": EXPIRES, "aud": HOST, "grant_type": "refresh_token"})
ASSERTION = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhcGk6Ly9BenVyZUFEVG9rZW5FeGNoYW5nZSJ9.c2ln"


class Azure:
    """Entra ID and the registry's token exchange, as stand-ins over TLS."""

    def __init__(self, directory: Path) -> None:
        self.ca = test_ca(directory, ["login.microsoftonline.com", HOST])
        self.entra = StandIn(self._entra, tls=self.ca.tls)
        self.acr = StandIn(self._acr, tls=self.ca.tls)
        self.assertions = {ASSERTION}

    def _entra(self, seen: Seen) -> Answer:
        form = seen.form()
        proof = form.get("client_assertion") or form.get("client_secret")
        if (
            seen.path != f"/{TENANT}/oauth2/v2.0/token"
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != CLIENT
            or form.get("scope") != "https://containerregistry.azure.net/.default"
            or proof not in self.assertions
        ):
            description = f"AADSTS700211: no match for {proof}"
            return Answer(400, {"error": "invalid_client", "error_description": description})
        if "client_assertion" in form:
            assert form["client_assertion_type"] == (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            )
        return Answer(200, {"token_type": "Bearer", "expires_in": 3599,
                            "access_token": "entra-access-token"})  # fmt: skip

    def _acr(self, seen: Seen) -> Answer:
        form = seen.form()
        if (
            seen.path != "/oauth2/exchange"
            or seen.query.get("api-version") != ["2021-07-01"]
            or form != {"grant_type": "access_token", "service": HOST,
                        "access_token": "entra-access-token"}
        ):  # fmt: skip
            return Answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "refused"}]})
        return Answer(200, {"refresh_token": REFRESH})

    def http(self) -> CloudHTTP:
        return CloudHTTP(
            ca_file=ca_bundle({"SSL_CERT_FILE": str(self.ca.ca)}),
            connect_to={("login.microsoftonline.com", 443): self.entra.address,
                        (HOST, 443): self.acr.address},
        )  # fmt: skip

    def stop(self) -> None:
        self.entra.stop()
        self.acr.stop()


@pytest.fixture
def azure(tmp_path: Path) -> Iterator[Azure]:
    stand_ins = Azure(tmp_path / "azure")
    yield stand_ins
    stand_ins.stop()


@pytest.fixture
def http(azure: Azure) -> Iterator[CloudHTTP]:
    client = azure.http()
    yield client
    client.close()


@pytest.fixture(scope="module")
def acr_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    if registry_binary("debian") is None:
        pytest.skip("docker-registry is missing: run scripts/install-packages")
    workdir = tmp_path_factory.mktemp("acr")
    with start_registry(workdir, auth="token", users={USER: REFRESH}) as registry:
        with Pusher(registry.base_url, registry.push_headers("charts/web")) as push:
            push.helm_chart("charts", "web", "1.2.3")
        yield registry


def workload_env(token_file: Path) -> dict[str, str]:
    return {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT,
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/"}  # fmt: skip


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "azure-identity-token"
    path.write_text(ASSERTION)
    return path


def tags(registry: RunningRegistry, credentials: Credentials) -> list[str]:
    port = int(registry.host.rsplit(":", 1)[1])
    with RegistryClient(connect_to={(HOST, 80): ("127.0.0.1", port)}, retries=0) as client:
        return client.list_tags(RepositoryRef(HOST, "charts/web"), credentials, TLSOptions(True))


@pytest.mark.registry
def test_workload_identity_to_entra_to_acr_to_the_registry(
    http: CloudHTTP, token_file: Path, acr_registry: RunningRegistry
) -> None:
    cloud = CloudCredentials({Provider.AZURE: AzureIssuer(workload_env(token_file), http)})
    credentials = cloud.credentials(ACR)
    assert (credentials.username, credentials.password) == (USER, REFRESH)
    assert tags(acr_registry, credentials) == ["1.2.3"]
    with pytest.raises(RegistryAuthError):
        tags(acr_registry, Credentials(USER, jwt_unsigned({"exp": EXPIRES})))


def test_refresh_token_lives_until_its_exp(http: CloudHTTP, token_file: Path) -> None:
    issued = AzureIssuer(workload_env(token_file), http).controller(ACR)
    assert issued.expires_at == EXPIRES
    assert jwt_expiry(REFRESH, "ACR") == EXPIRES
    with pytest.raises(CloudAuthError, match="not a JWT with an expiry"):
        jwt_expiry("opaque", "ACR")


def test_a_refused_assertion_names_client_and_tenant_not_the_token(
    azure: Azure, http: CloudHTTP, token_file: Path
) -> None:
    azure.assertions = {"another"}
    with pytest.raises(CloudAuthError) as caught:
        AzureIssuer(workload_env(token_file), http).controller(ACR)
    message = str(caught.value)
    assert CLIENT in message and TENANT in message and "AADSTS700211" in message
    assert ASSERTION not in message


def test_client_secret_comes_first(azure: Azure, http: CloudHTTP, token_file: Path) -> None:
    azure.assertions = {"s3cret-value"}
    env = {**workload_env(token_file), "AZURE_CLIENT_SECRET": "s3cret-value"}
    assert AzureIssuer(env, http).controller(ACR).password == REFRESH
    assert "client_secret" in azure.entra.seen[0].form()


def test_object_identity_from_the_service_account_annotations(
    azure: Azure, http: CloudHTTP
) -> None:
    minted: list[str] = []

    def token(audience: str) -> str:
        minted.append(audience)
        return ASSERTION

    annotations = {"azure.workload.identity/tenant-id": TENANT,
                   "azure.workload.identity/client-id": CLIENT}  # fmt: skip
    identity = ObjectIdentity("apps", "reader", annotations, token)
    issued = AzureIssuer({}, http).for_account(ACR, identity)  # the default authority
    assert minted == ["api://AzureADTokenExchange"]
    assert issued.password == REFRESH
    tenant_only = {"azure.workload.identity/tenant-id": TENANT}
    with pytest.raises(CloudAuthError, match="azure client ID is not set"):
        AzureIssuer({}, http).for_account(ACR, ObjectIdentity("apps", "r", tenant_only, token))


def test_managed_identity_from_the_metadata_service(azure: Azure) -> None:
    def imds(seen: Seen) -> Answer:
        if seen.headers.get("metadata") != "true":
            return Answer(400, {"error": "invalid_request"})
        assert seen.query["resource"] == ["https://containerregistry.azure.net"]
        assert seen.query["client_id"] == [CLIENT]
        return Answer(200, {"access_token": "entra-access-token", "expires_in": "3599"})

    with StandIn(imds) as service:
        http = azure.http()
        try:
            env = {"AZURE_CLIENT_ID": CLIENT, "AZURE_POD_IDENTITY_AUTHORITY_HOST": service.url}
            assert AzureIssuer(env, http).controller(ACR).password == REFRESH
            nowhere = {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1"}
            with pytest.raises(CloudAuthError, match="no Azure credentials"):
                AzureIssuer(nowhere, http).controller(ACR)
        finally:
            http.close()


def test_authority_must_be_https(http: CloudHTTP, token_file: Path) -> None:
    env = {**workload_env(token_file), "AZURE_AUTHORITY_HOST": "http://login.example"}
    with pytest.raises(CloudAuthError, match="must be https"):
        AzureIssuer(env, http).controller(ACR)


def test_missing_token_file(http: CloudHTTP, tmp_path: Path) -> None:
    with pytest.raises(CloudAuthError, match=r"federated token file .*: cannot be read"):
        AzureIssuer(workload_env(tmp_path / "absent"), http).controller(ACR)


def test_environment_file_for_another_cloud(tmp_path: Path, http: CloudHTTP) -> None:
    path = tmp_path / "azurestack.json"
    path.write_text(json.dumps({"containerRegistryDNSSuffix": "acr.stack.example",
                                "resourceManagerEndpoint": "https://management.stack.example",
                                "tokenAudience": "https://management.stack.example"}))  # fmt: skip
    issuer = AzureIssuer({"AZURE_ENVIRONMENT_FILEPATH": str(path)}, http)
    cloud = CloudCredentials({Provider.AZURE: issuer}, azure_environment=issuer.environment)
    matched = cloud.match(Provider.AZURE, "team.acr.stack.example")
    assert matched.scope == "https://management.stack.example/.default"
    with pytest.raises(CloudMismatch, match="must end with"):
        cloud.match(Provider.AZURE, "team.example.org")
    broken = AzureIssuer({"AZURE_ENVIRONMENT_FILEPATH": str(tmp_path / "nope")}, http)
    with pytest.raises(CloudAuthError, match="AZURE_ENVIRONMENT_FILEPATH"):
        broken.environment()
