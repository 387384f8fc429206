"""``spec.provider: aws`` end to end against moto in server mode: STS
AssumeRoleWithWebIdentity with a token file, then ECR GetAuthorizationToken, then a real
registry (Debian's, htpasswd) that accepts exactly the credentials moto minted.

moto answers GetAuthorizationToken with ``AWS:<account>-auth-token`` for the account of
the *access key that signed the call*: the role's account (210987654321) for the keys STS
issued, moto's default account for any other key. So a chain that skipped STS, or signed
ECR with other keys, gets a password the registry refuses. With moto's IAM mode on, moto
also recomputes the ECR call's SigV4 signature with the role's secret. The ECR host names a real
region and account; the client reaches the loopback registry through ``connect_to``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from devenv.push import Pusher
from devenv.registry import RunningRegistry, registry_binary, start_registry
from exporter.cloud.aws import AwsIssuer
from exporter.cloud.broker import CloudCredentials, ObjectIdentity
from exporter.cloud.errors import CloudAuthError
from exporter.cloud.http import CloudHTTP
from exporter.flux.cloud import Provider, match_registry
from exporter.model import Credentials, RepositoryRef, TLSOptions
from exporter.registry.client import RegistryClient
from exporter.registry.errors import RegistryAuthError
from tests.fixtures.standin import Answer, Seen, StandIn

ACCOUNT = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/flux-reader"
HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
ECR = match_registry(Provider.AWS, HOST)
PASSWORD = f"{ACCOUNT}-auth-token"  # what moto mints for the role's account


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def ecr_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    if registry_binary("debian") is None:
        pytest.skip("docker-registry is missing: run scripts/install-packages")
    workdir = tmp_path_factory.mktemp("ecr")
    with start_registry(workdir, auth="htpasswd", users={"AWS": PASSWORD}) as registry:
        with Pusher(registry.base_url, registry.push_headers("apps/web")) as push:
            push.flux_artifact("apps/web", "v1.0.0")
            push.flux_artifact("apps/web", "v1.1.0")
        yield registry


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.c2ln\n")
    return path


@pytest.fixture(scope="module")
def http() -> Iterator[CloudHTTP]:
    client = CloudHTTP()
    yield client
    client.close()


@pytest.fixture
def issuer(http: CloudHTTP) -> Callable[[dict[str, str]], AwsIssuer]:
    def make(env: dict[str, str]) -> AwsIssuer:
        return AwsIssuer({"AWS_EC2_METADATA_DISABLED": "true", **env}, http)

    return make


Make = Callable[[dict[str, str]], AwsIssuer]


def tags(registry: RunningRegistry, credentials: Credentials) -> list[str]:
    port = int(registry.host.rsplit(":", 1)[1])
    with RegistryClient(connect_to={(HOST, 80): ("127.0.0.1", port)}, retries=0) as client:
        return client.list_tags(RepositoryRef(HOST, "apps/web"), credentials, TLSOptions(True))


@pytest.mark.registry
def test_irsa_token_file_to_sts_to_ecr_to_the_registry(
    moto: str, ecr_registry: RunningRegistry, token_file: Path, issuer: Make
) -> None:
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
           "AWS_ENDPOINT_URL": moto}  # fmt: skip
    cloud = CloudCredentials({Provider.AWS: issuer(env)})
    credentials = cloud.credentials(ECR)
    assert (credentials.username, credentials.password) == ("AWS", PASSWORD)
    assert tags(ecr_registry, credentials) == ["v1.0.0", "v1.1.0"]


@pytest.mark.registry
def test_keys_that_did_not_come_from_the_role_are_refused(
    moto: str, ecr_registry: RunningRegistry, issuer: Make
) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_ENDPOINT_URL_ECR": moto}  # fmt: skip
    issued = issuer(env).controller(ECR)
    assert issued.password != PASSWORD  # moto's default account, not the role's
    with pytest.raises(RegistryAuthError):
        tags(ecr_registry, Credentials(issued.username, issued.password))


def test_object_identity_assumes_the_annotated_role(moto: str, issuer: Make) -> None:
    minted: list[str] = []

    def token(audience: str) -> str:
        minted.append(audience)
        return "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln"

    sts = StandIn(lambda seen: Answer(200, STS_OK))
    try:
        env = {"AWS_ENDPOINT_URL_STS": sts.url, "AWS_ENDPOINT_URL_ECR": moto}
        identity = ObjectIdentity("apps", "reader", {"eks.amazonaws.com/role-arn": ROLE}, token)
        issued = issuer(env).for_account(ECR, identity)
    finally:
        sts.stop()
    assert minted == ["sts.amazonaws.com"]
    [call] = sts.seen
    form = call.form()
    assert form["Action"] == "AssumeRoleWithWebIdentity" and form["RoleArn"] == ROLE
    assert form["RoleSessionName"] == "reader.apps.eu-west-1.fluxcd.io"
    assert form["WebIdentityToken"].startswith("eyJ")
    assert "authorization" not in call.headers  # the token is the proof: unsigned
    assert issued.username == "AWS"


def test_object_identity_without_a_valid_role_annotation(issuer: Make) -> None:
    identity = ObjectIdentity("apps", "reader", {}, lambda audience: "unused")
    with pytest.raises(CloudAuthError, match="service account apps/reader: invalid eks"):
        issuer({}).for_account(ECR, identity)


def test_missing_token_file_and_role(tmp_path: Path, issuer: Make) -> None:
    missing = tmp_path / "absent"
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(missing)}
    with pytest.raises(CloudAuthError, match=f"web identity token file {missing}: cannot be"):
        issuer(env).controller(ECR)
    with pytest.raises(CloudAuthError, match="AWS_ROLE_ARN is not"):
        issuer({"AWS_WEB_IDENTITY_TOKEN_FILE": str(missing)}).controller(ECR)
    with pytest.raises(CloudAuthError, match="no AWS credentials"):
        issuer({}).controller(ECR)


def test_a_refusing_role_is_named_and_the_token_is_not(token_file: Path, issuer: Make) -> None:
    secret = token_file.read_text().strip()
    refusal = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        "<Type>Sender</Type><Code>InvalidIdentityToken</Code>"
        f"<Message>Incorrect token audience in {secret}</Message></Error></ErrorResponse>"
    )
    sts = StandIn(lambda seen: Answer(400, refusal, {"Content-Type": "text/xml"}))
    try:
        env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
               "AWS_ENDPOINT_URL_STS": sts.url}  # fmt: skip
        with pytest.raises(CloudAuthError) as caught:
            issuer(env).controller(ECR)
    finally:
        sts.stop()
    message = str(caught.value)
    assert ROLE in message and "InvalidIdentityToken" in message
    assert "Incorrect token audience" in message and secret not in message


def test_pod_identity_container_credentials(moto: str, tmp_path: Path, issuer: Make) -> None:
    agent_token = tmp_path / "eks-pod-identity-token"
    agent_token.write_text("pod-identity-token")
    credentials = {"AccessKeyId": "ASIAPODIDENTITY00001", "SecretAccessKey": "s",
                   "Token": "t", "Expiration": "2099-01-01T00:00:00Z"}  # fmt: skip
    agent = StandIn(lambda seen: Answer(200, credentials))
    try:
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{agent.url}/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(agent_token),
               "AWS_ENDPOINT_URL": moto}  # fmt: skip
        issued = issuer(env).controller(ECR)
    finally:
        agent.stop()
    [call] = agent.seen
    assert call.path == "/v1/credentials" and call.headers["authorization"] == "pod-identity-token"
    assert issued.username == "AWS"


def test_container_credentials_only_from_the_agent_or_https(issuer: Make) -> None:
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://198.51.100.7/creds"}
    with pytest.raises(CloudAuthError, match="plain HTTP only"):
        issuer(env).controller(ECR)


def test_instance_metadata_imdsv2(moto: str, http: CloudHTTP) -> None:
    def imds(seen: Seen) -> Answer:
        if seen.method == "PUT" and seen.path == "/latest/api/token":
            return Answer(200, "imds-session")
        if seen.headers.get("x-aws-ec2-metadata-token") != "imds-session":
            return Answer(401)
        if seen.path.endswith("/security-credentials/"):
            return Answer(200, "node-role\n")
        return Answer(200, {"Code": "Success", "AccessKeyId": "ASIANODE000000000001",
                            "SecretAccessKey": "s", "Token": "t",
                            "Expiration": "2099-01-01T00:00:00Z"})  # fmt: skip

    service = StandIn(imds)
    try:
        env = {"AWS_EC2_METADATA_DISABLED": "false", "AWS_ENDPOINT_URL": moto,
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": service.url}  # fmt: skip
        issued = AwsIssuer(env, http).controller(ECR)
    finally:
        service.stop()
    assert [s.path for s in service.seen][
        -1
    ] == "/latest/meta-data/iam/security-credentials/node-role"
    assert issued.username == "AWS"


def test_ecr_public_is_signed_for_ecr_public_in_us_east_1(issuer: Make) -> None:
    answer = {"authorizationData": {"authorizationToken": "QVdTOnB1YmxpYw==",
                                    "expiresAt": 4102444800}}  # fmt: skip
    api = StandIn(lambda seen: Answer(200, answer))
    try:
        env = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "s",
               "AWS_ENDPOINT_URL_ECR_PUBLIC": api.url}  # fmt: skip
        issued = issuer(env).controller(match_registry(Provider.AWS, "public.ecr.aws"))
    finally:
        api.stop()
    [call] = api.seen
    assert call.headers["x-amz-target"] == "SpencerFrontendService.GetAuthorizationToken"
    assert "/us-east-1/ecr-public/aws4_request" in call.headers["authorization"]
    assert (issued.username, issued.password, issued.expires_at) == ("AWS", "public", 4102444800)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"authorizationData": []}, "no token"),
        ({"authorizationData": [{"authorizationToken": "%%%", "expiresAt": 1}]}, "not base64"),
        ({"authorizationData": [{"authorizationToken": "YTpiOmM=", "expiresAt": 1}]},
         "invalid authorization token format"),
    ],
)  # fmt: skip
def test_unusable_authorization_data(body: dict[str, object], problem: str, issuer: Make) -> None:
    api = StandIn(lambda seen: Answer(200, json.dumps(body)))
    try:
        env = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "s",
               "AWS_ENDPOINT_URL_ECR": api.url}  # fmt: skip
        with pytest.raises(CloudAuthError, match=problem):
            issuer(env).controller(ECR)
    finally:
        api.stop()


STS_OK = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials>
    <AccessKeyId>ASIAOBJECTIDENTITY01</AccessKeyId><SecretAccessKey>s</SecretAccessKey>
    <SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>
  </Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"""


@pytest.fixture
def moto_checks_signatures() -> Iterator[None]:
    """moto's IAM mode from the second request on: the first (the unsigned STS call, as
    AWS takes it) passes, ECR's is checked: SigV4 recomputed with the role's secret and the
    role's policy applied."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 1
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before
        ActionAuthenticatorMixin.request_count = 0


def test_moto_checks_the_signature_of_the_ecr_call(
    moto: str, token_file: Path, issuer: Make, http: CloudHTTP, moto_checks_signatures: None
) -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.models import iam_backends

    from exporter.cloud.sigv4 import AwsKeys

    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "Federated": "oidc"}, "Action": "sts:AssumeRoleWithWebIdentity"}]}  # fmt: skip
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
             "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}  # fmt: skip
    iam = iam_backends[ACCOUNT]["global"]
    iam.create_role("flux-reader", json.dumps(trust), "/", None, "", [], "3600")
    iam.put_role_policy("flux-reader", "ecr", json.dumps(allow))
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
           "AWS_ENDPOINT_URL": moto}  # fmt: skip
    assert issuer(env).controller(ECR).password == PASSWORD

    class WrongSecret(AwsIssuer):
        def assume_role(self, role: str, token: str, session: str, region: str) -> AwsKeys:
            keys = super().assume_role(role, token, session, region)
            return AwsKeys(keys.access_key_id, "not-the-secret", keys.session_token)

    ActionAuthenticatorMixin.request_count = 0  # the STS call passes again, ECR's is checked
    with pytest.raises(CloudAuthError, match="SignatureDoesNotMatch"):
        WrongSecret({"AWS_EC2_METADATA_DISABLED": "true", **env}, http).controller(ECR)
