"""Flux's rules for ``spec.provider``: which registry hosts belong to a cloud, and what a
ServiceAccount's annotations say about the identity to use.

Read from fluxcd/pkg ``auth`` v0.54.1 (what source-controller v1.9.3 requires): the host
patterns, the region an ECR host names, the ACR scope, the annotation names and their
patterns are Flux's, and so are the messages of a mismatch (one deliberate difference:
an ECR host must match as a whole, see ``_AWS``). Flux checks the host only
when it asks for credentials, and a host that does not match is a failed
authentication, never an anonymous pull: :func:`match_registry` raises then.

When the provider is used at all is Flux's too (source-controller v1.9.3): an
OCIRepository uses it only when neither ``secretRef`` nor the pull secrets of
``serviceAccountName`` give a keychain, and with ``serviceAccountName`` it is that
account's identity (object-level workload identity, behind Flux's
``ObjectLevelWorkloadIdentity`` feature gate); an OCI HelmRepository uses it when it has
no ``secretRef``, always with the controller's identity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from exporter.model import quoted


class Provider(StrEnum):
    """``spec.provider``; the CRDs allow exactly these."""

    GENERIC = "generic"
    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"


CLOUDS = frozenset({Provider.AWS, Provider.AZURE, Provider.GCP})
FEATURE_GATE = "ObjectLevelWorkloadIdentity"


class CloudMismatch(ValueError):
    """The registry host does not belong to the provider, or an annotation is invalid."""


def cloud_provider(value: str) -> Provider | None:
    """The cloud ``spec.provider`` names; None for ``generic``, empty or unknown values."""
    try:
        provider = Provider(value)
    except ValueError:
        return None
    return provider if provider in CLOUDS else None


def is_known_provider(value: str) -> bool:
    return value in ("", *(p.value for p in Provider))


# -- registries -----------------------------------------------------------------------------

# aws/provider.go: sourced from the ECR credential helper; searched, not anchored
AWS_REGISTRY_PATTERN = (
    r"([0-9+]*).dkr[.-]ecr(?:-fips)?\.([^/.]*)\.(amazonaws\.com[.cn]*|amazonaws\.eu|"
    r"sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov|on\.aws)"
)
AWS_PUBLIC_ECR = "public.ecr.aws"
AWS_PUBLIC_REGION = "us-east-1"  # ECR Public's tokens are only issued there
GCP_REGISTRY_PATTERN = r"^(((.+\.)?gcr\.io)|(.+-docker\.pkg\.dev)|(docker\.s3nsregistry\.fr))$"
AZURE_REGISTRY_PATTERN = r"^.+\.(azurecr\.io|azurecr\.cn|azurecr\.de|azurecr\.us)$"
# Flux searches the AWS pattern unanchored: it would also take
# `<account>.dkr.ecr.<region>.amazonaws.com.example.org` and send the ECR token there. The
# exporter wants the whole host (a port aside) to be ECR's.
_AWS = re.compile(rf"(?:{AWS_REGISTRY_PATTERN})(?::[0-9]+)?")
_GCP = re.compile(GCP_REGISTRY_PATTERN)
_AZURE = re.compile(AZURE_REGISTRY_PATTERN)

# azcontainerregistry v0.2.3 gives every cloud (public, China, US Government) this audience
AZURE_ACR_SCOPE = "https://containerregistry.azure.net/.default"


@dataclass(frozen=True, slots=True)
class CloudRegistry:
    """A registry host matched to its provider.

    ``key`` is what Flux puts in the credentials' cache key (the ECR region, ``gcp``, the
    ACR host): credentials for one key serve every repository under it. ``region`` is the
    AWS region the token comes from; ``public`` is ECR Public. ``scope`` is the Entra ID
    scope of an ACR access token.
    """

    provider: Provider
    registry: str
    key: str
    region: str = ""
    public: bool = False
    scope: str = ""


@dataclass(frozen=True, slots=True)
class AzureEnvironment:
    """An Azure environment file (``AZURE_ENVIRONMENT_FILEPATH``), for clouds other than
    the three Flux knows: the registries' DNS suffix and the scope of their tokens."""

    registry_suffix: str
    resource_manager: str


def match_registry(
    provider: Provider, registry: str, *, azure: AzureEnvironment | None = None
) -> CloudRegistry:
    """The registry ``host[:port]`` as Flux reads it for ``provider``; raises CloudMismatch."""
    if provider is Provider.AWS:
        if registry == AWS_PUBLIC_ECR:
            return CloudRegistry(provider, registry, AWS_PUBLIC_ECR, AWS_PUBLIC_REGION, True)
        found = _AWS.fullmatch(registry)
        if found is None:
            raise CloudMismatch(
                f"invalid AWS registry: {quoted(registry)}: must match {AWS_REGISTRY_PATTERN}"
            )
        return CloudRegistry(provider, registry, found.group(2), found.group(2))
    if provider is Provider.GCP:
        if not _GCP.search(registry):
            raise CloudMismatch(
                f"invalid GCP registry: {quoted(registry)}: must match {GCP_REGISTRY_PATTERN}"
            )
        return CloudRegistry(provider, registry, "gcp")
    if provider is Provider.AZURE:
        if _AZURE.search(registry) is None:
            if azure is None:
                raise CloudMismatch(
                    f"invalid Azure registry: {quoted(registry)}: "
                    f"must match {AZURE_REGISTRY_PATTERN}"
                )
            if not registry.endswith(azure.registry_suffix):
                raise CloudMismatch(
                    f"invalid Azure registry: {quoted(registry)}: "
                    f"must end with {azure.registry_suffix}"
                )
        # an environment file names no ACR audience: Flux falls back to Resource Manager's
        scope = azure.resource_manager + "/.default" if azure else AZURE_ACR_SCOPE
        return CloudRegistry(provider, registry, registry, scope=scope)
    raise CloudMismatch(f"provider {provider.value!r} issues no registry credentials")


def aws_dns_suffix(region: str) -> str:
    """The DNS suffix of the AWS partition a region belongs to (the SDK's partitions)."""
    for prefix, suffix in _AWS_PARTITIONS:
        if region.startswith(prefix):
            return suffix
    return "amazonaws.com"


_AWS_PARTITIONS = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
    ("eusc-", "amazonaws.eu"),
)


# -- ServiceAccount annotations (object-level workload identity) ----------------------------

AWS_AUDIENCE = "sts.amazonaws.com"
AZURE_AUDIENCE = "api://AzureADTokenExchange"
AWS_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
GCP_SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"
GCP_PROVIDER_ANNOTATION = "gcp.auth.fluxcd.io/workload-identity-provider"
AZURE_CLIENT_ANNOTATION = "azure.workload.identity/client-id"
AZURE_TENANT_ANNOTATION = "azure.workload.identity/tenant-id"
AWS_ROLE_PATTERN = r"^arn:aws[\w-]*:iam::[0-9]{1,30}:role/.{1,200}$"
GCP_EMAIL_PATTERN = r"^[a-zA-Z0-9-]{1,100}@[a-zA-Z0-9-]{1,100}\.iam\.gserviceaccount\.com$"
GCP_PROVIDER_PATTERN = (
    r"^projects/\d{1,30}/locations/global/workloadIdentityPools/[^/]{1,100}/providers/[^/]{1,100}$"
)
_ROLE = re.compile(AWS_ROLE_PATTERN, re.ASCII)
_EMAIL = re.compile(GCP_EMAIL_PATTERN)
_WIP = re.compile(GCP_PROVIDER_PATTERN, re.ASCII)


def aws_role_arn(annotations: Mapping[str, str]) -> str:
    arn = annotations.get(AWS_ROLE_ANNOTATION, "")
    if not _ROLE.search(arn):
        raise CloudMismatch(
            f"invalid {AWS_ROLE_ANNOTATION} annotation: {quoted(arn)}: "
            f"must match {AWS_ROLE_PATTERN}"
        )
    return arn


def aws_session_name(service_account: str, namespace: str, region: str) -> str:
    """The role session name Flux gives an object's identity (seen in CloudTrail)."""
    return f"{service_account}.{namespace}.{region}.fluxcd.io"


def gcp_service_account(annotations: Mapping[str, str]) -> str | None:
    """The Google service account to impersonate; None: the federated identity itself."""
    email = annotations.get(GCP_SERVICE_ACCOUNT_ANNOTATION, "")
    if not email:
        return None
    if not _EMAIL.search(email):
        raise CloudMismatch(
            f"invalid {GCP_SERVICE_ACCOUNT_ANNOTATION} annotation: {quoted(email)}: "
            f"must match {GCP_EMAIL_PATTERN}"
        )
    return email


def gcp_provider_audience(annotations: Mapping[str, str]) -> str | None:
    """The STS audience of a workload identity provider outside GKE; None: GKE's pool."""
    provider = annotations.get(GCP_PROVIDER_ANNOTATION, "")
    if not provider:
        return None
    if not _WIP.search(provider):
        raise CloudMismatch(
            f"invalid {GCP_PROVIDER_ANNOTATION} annotation: {quoted(provider)}: "
            f"must match {GCP_PROVIDER_PATTERN}"
        )
    return f"//iam.googleapis.com/{provider}"


def gke_audiences(project: str, location: str, cluster: str) -> tuple[str, str]:
    """(the ServiceAccount token's audience, the STS audience) on GKE."""
    pool = f"{project}.svc.id.goog"
    provider = (
        f"https://container.googleapis.com/v1/projects/{project}/locations/{location}"
        f"/clusters/{cluster}"
    )
    return pool, f"identitynamespace:{pool}:{provider}"


def azure_identity(annotations: Mapping[str, str]) -> tuple[str, str]:
    """(tenant id, client id) of an object's Azure identity."""
    if AZURE_TENANT_ANNOTATION not in annotations:
        raise CloudMismatch(
            "azure tenant ID is not set in the service account annotation "
            + AZURE_TENANT_ANNOTATION
        )
    if AZURE_CLIENT_ANNOTATION not in annotations:
        raise CloudMismatch(
            "azure client ID is not set in the service account annotation "
            + AZURE_CLIENT_ANNOTATION
        )
    return annotations[AZURE_TENANT_ANNOTATION], annotations[AZURE_CLIENT_ANNOTATION]
