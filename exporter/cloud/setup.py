"""The cloud credentials the service uses: one HTTP client, one issuer per provider, read
from the process environment once (the variables the clouds' webhooks and agents inject)."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.cloud.aws import AwsIssuer
from exporter.cloud.azure import AzureIssuer
from exporter.cloud.broker import CloudCredentials, Issuer
from exporter.cloud.gcp import GcpIssuer
from exporter.cloud.http import CloudHTTP, ca_bundle
from exporter.flux.cloud import Provider
from exporter.registry.pools import ConnectTo


def cloud_credentials(
    env: Mapping[str, str], *, connect_to: ConnectTo | None = None
) -> tuple[CloudCredentials, CloudHTTP]:
    """The credentials broker and the client to close when done."""
    snapshot = dict(env)
    http = CloudHTTP(ca_file=ca_bundle(snapshot), connect_to=connect_to)
    azure = AzureIssuer(snapshot, http)
    issuers: dict[Provider, Issuer] = {
        Provider.AWS: AwsIssuer(snapshot, http),
        Provider.GCP: GcpIssuer(snapshot, http),
        Provider.AZURE: azure,
    }
    return CloudCredentials(issuers, azure_environment=azure.environment), http
