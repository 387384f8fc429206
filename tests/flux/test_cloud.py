"""Flux's host matching and ServiceAccount annotations for ``spec.provider`` (fluxcd/pkg
auth v0.54.1), and where the exporter is stricter than Flux on purpose."""

from __future__ import annotations

import pytest

from exporter.flux.cloud import (
    AZURE_ACR_SCOPE,
    AzureEnvironment,
    CloudMismatch,
    Provider,
    aws_dns_suffix,
    aws_role_arn,
    aws_session_name,
    azure_identity,
    cloud_provider,
    gcp_provider_audience,
    gcp_service_account,
    gke_audiences,
    is_known_provider,
    match_registry,
)


def test_provider_names() -> None:
    assert cloud_provider("aws") is Provider.AWS and cloud_provider("gcp") is Provider.GCP
    assert cloud_provider("azure") is Provider.AZURE
    assert cloud_provider("generic") is None and cloud_provider("") is None
    assert cloud_provider("AWS") is None  # the CRD's enum is lower case
    assert is_known_provider("") and is_known_provider("generic") and is_known_provider("aws")
    assert not is_known_provider("alibaba")


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("123456789012.dkr-ecr.eu-west-1.on.aws", "eu-west-1"),
        ("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", "us-iso-east-1"),
        ("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", "eusc-de-east-1"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", "us-east-1"),
    ],
)
def test_ecr_hosts_name_their_region(host: str, region: str) -> None:
    matched = match_registry(Provider.AWS, host)
    assert (matched.region, matched.key, matched.public) == (region, region, False)


def test_ecr_public_is_us_east_1() -> None:
    matched = match_registry(Provider.AWS, "public.ecr.aws")
    assert (matched.region, matched.key, matched.public) == ("us-east-1", "public.ecr.aws", True)


@pytest.mark.parametrize(
    "host",
    [
        "ghcr.io",
        "123456789012.dkr.ecr.us-east-1.example.com",
        "europe-docker.pkg.dev",
        # Flux searches its pattern without anchors and would send the ECR token to these:
        # the exporter wants the whole host to be ECR's
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.example.org",
        "evil-123456789012.dkr.ecr.us-east-1.amazonaws.com",
    ],
)
def test_other_hosts_are_no_ecr(host: str) -> None:
    with pytest.raises(CloudMismatch, match=r"invalid AWS registry: .* must match"):
        match_registry(Provider.AWS, host)


@pytest.mark.parametrize(
    "host",
    ["gcr.io", "eu.gcr.io", "europe-docker.pkg.dev", "us-central1-docker.pkg.dev",
     "docker.s3nsregistry.fr"],
)  # fmt: skip
def test_gcp_hosts(host: str) -> None:
    matched = match_registry(Provider.GCP, host)
    assert matched.key == "gcp"  # one token for every GCP registry (Flux's cache key)


@pytest.mark.parametrize(
    "host", ["pkg.dev", "docker.pkg.dev", "gcr.io.example.org", "gcr.io:443", "ghcr.io"]
)
def test_other_hosts_are_not_gcp(host: str) -> None:
    with pytest.raises(CloudMismatch, match=r"invalid GCP registry"):
        match_registry(Provider.GCP, host)


@pytest.mark.parametrize(
    "host", ["team.azurecr.io", "team.azurecr.cn", "team.azurecr.de", "team.azurecr.us"]
)
def test_acr_hosts(host: str) -> None:
    matched = match_registry(Provider.AZURE, host)
    assert matched.key == host and matched.scope == AZURE_ACR_SCOPE


def test_acr_mismatch_and_environment_file() -> None:
    with pytest.raises(CloudMismatch, match=r"invalid Azure registry: 'azurecr.io'"):
        match_registry(Provider.AZURE, "azurecr.io")
    stack = AzureEnvironment("acr.stack.example", "https://management.stack.example")
    matched = match_registry(Provider.AZURE, "team.acr.stack.example", azure=stack)
    assert matched.scope == "https://management.stack.example/.default"
    assert match_registry(Provider.AZURE, "team.azurecr.io", azure=stack).scope == (
        "https://management.stack.example/.default"
    )
    with pytest.raises(CloudMismatch, match=r"must end with acr.stack.example"):
        match_registry(Provider.AZURE, "team.example.org", azure=stack)


def test_generic_issues_nothing() -> None:
    with pytest.raises(CloudMismatch):
        match_registry(Provider.GENERIC, "ghcr.io")


def test_partitions() -> None:
    assert aws_dns_suffix("eu-west-1") == "amazonaws.com"
    assert aws_dns_suffix("cn-northwest-1") == "amazonaws.com.cn"
    assert aws_dns_suffix("us-gov-east-1") == "amazonaws.com"
    assert aws_dns_suffix("us-isob-east-1") == "sc2s.sgov.gov"


def test_role_annotation() -> None:
    arn = "arn:aws:iam::123456789012:role/flux-reader"
    assert aws_role_arn({"eks.amazonaws.com/role-arn": arn}) == arn
    assert aws_role_arn({"eks.amazonaws.com/role-arn": "arn:aws-cn:iam::1:role/r"})
    for bad in ({}, {"eks.amazonaws.com/role-arn": "flux-reader"}):
        with pytest.raises(CloudMismatch, match=r"invalid eks.amazonaws.com/role-arn annotation"):
            aws_role_arn(bad)
    assert aws_session_name("reader", "apps", "eu-west-1") == "reader.apps.eu-west-1.fluxcd.io"


def test_gcp_annotations() -> None:
    email = "reader@my-project.iam.gserviceaccount.com"
    assert gcp_service_account({"iam.gke.io/gcp-service-account": email}) == email
    assert gcp_service_account({}) is None
    with pytest.raises(CloudMismatch, match=r"iam.gke.io/gcp-service-account"):
        gcp_service_account({"iam.gke.io/gcp-service-account": "reader@gmail.com"})
    wip = "projects/123/locations/global/workloadIdentityPools/pool/providers/kind"
    key = "gcp.auth.fluxcd.io/workload-identity-provider"
    assert gcp_provider_audience({key: wip}) == f"//iam.googleapis.com/{wip}"
    assert gcp_provider_audience({}) is None
    with pytest.raises(CloudMismatch, match=key):
        gcp_provider_audience({key: "projects/p/pools/x"})
    assert gke_audiences("proj", "europe-west1", "prod") == (
        "proj.svc.id.goog",
        "identitynamespace:proj.svc.id.goog:https://container.googleapis.com/v1/projects/proj"
        "/locations/europe-west1/clusters/prod",
    )


def test_azure_annotations() -> None:
    tenant, client = "azure.workload.identity/tenant-id", "azure.workload.identity/client-id"
    assert azure_identity({tenant: "t", client: "c"}) == ("t", "c")
    with pytest.raises(CloudMismatch, match="azure tenant ID is not set"):
        azure_identity({client: "c"})
    with pytest.raises(CloudMismatch, match="azure client ID is not set"):
        azure_identity({tenant: "t"})
