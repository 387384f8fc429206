"""Azure Container Registry credentials as Flux gets them (fluxcd/pkg auth v0.54.1,
``azure`` provider): an Entra ID access token for ACR's scope, exchanged at the
registry's ``/oauth2/exchange`` for an ACR refresh token, used as the password of
``00000000-0000-0000-0000-000000000000`` (what ``az acr login --expose-token`` prints). The
refresh token's own ``exp`` claim says how long it lives.

The controller's token, in Flux's order (its ``DefaultAzureCredential`` without the CLI):
``AZURE_TENANT_ID`` + ``AZURE_CLIENT_ID`` + ``AZURE_CLIENT_SECRET`` (a client secret; a
certificate is refused, it would need a crypto library); then workload identity, when
``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE`` and
``AZURE_AUTHORITY_HOST`` are all set (the file is read at every exchange: the kubelet
rotates it); then a managed identity from the instance metadata service (with
``AZURE_CLIENT_ID`` as the identity when set). An object's token: client id and tenant
from its ServiceAccount's ``azure.workload.identity/*`` annotations, a token of that
account with audience ``api://AzureADTokenExchange`` as the client assertion.

The authority is ``AZURE_AUTHORITY_HOST`` (https only, as azidentity wants), by default
Microsoft's public cloud; ``AZURE_ENVIRONMENT_FILEPATH`` names the registry suffix and the
scope of another cloud (Azure Stack), as in Flux.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

import httpx

from exporter.cloud.broker import Issued, ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.cloud.http import Issuer, Reply
from exporter.flux.cloud import (
    AZURE_AUDIENCE,
    AzureEnvironment,
    CloudMismatch,
    CloudRegistry,
    azure_identity,
)

USERNAME = "00000000-0000-0000-0000-000000000000"
AUTHORITY = "https://login.microsoftonline.com/"
IMDS = "http://169.254.169.254"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACR_API_VERSION = "2021-07-01"


class AzureIssuer(Issuer):
    def environment(self) -> AzureEnvironment | None:
        """The cloud an ``AZURE_ENVIRONMENT_FILEPATH`` file describes, if one is named."""
        path = self._env.get("AZURE_ENVIRONMENT_FILEPATH")
        if path is None:
            return None
        try:
            doc = json.loads(self._read(path))
            suffix, manager = doc["containerRegistryDNSSuffix"], doc["resourceManagerEndpoint"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CloudAuthError(
                f"AZURE_ENVIRONMENT_FILEPATH {path}: needs containerRegistryDNSSuffix and "
                "resourceManagerEndpoint"
            ) from None
        return AzureEnvironment(str(suffix), str(manager))

    def controller(self, registry: CloudRegistry) -> Issued:
        return self._acr_token(registry, self._controller_token(registry.scope))

    def for_account(self, registry: CloudRegistry, identity: ObjectIdentity) -> Issued:
        try:
            tenant, client = azure_identity(identity.annotations)
        except CloudMismatch as exc:
            raise CloudAuthError(f"service account {identity}: {exc}") from None
        assertion = identity.token(AZURE_AUDIENCE)
        token = self._entra_token(
            tenant, client, registry.scope,
            {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion},
            assertion,
        )  # fmt: skip
        return self._acr_token(registry, token)

    # -- Entra ID ----------------------------------------------------------------------------

    def _controller_token(self, scope: str) -> str:
        env = self._env
        tenant, client = env.get("AZURE_TENANT_ID"), env.get("AZURE_CLIENT_ID")
        if tenant and client and env.get("AZURE_CLIENT_SECRET"):
            secret = env["AZURE_CLIENT_SECRET"]
            return self._entra_token(tenant, client, scope, {"client_secret": secret}, secret)
        if tenant and client and env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            raise CloudAuthError("AZURE_CLIENT_CERTIFICATE_PATH: certificates are not supported")
        token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
        if tenant and client and token_file and env.get("AZURE_AUTHORITY_HOST"):
            try:
                assertion = self._read(token_file).strip()
            except OSError as exc:
                raise CloudAuthError(
                    f"federated token file {token_file}: cannot be read ({exc.strerror})"
                ) from None
            fields = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
            return self._entra_token(tenant, client, scope, fields, assertion)
        return self._managed_identity(scope, client)

    def _entra_token(
        self, tenant: str, client: str, scope: str, proof: Mapping[str, str], secret: str
    ) -> str:
        authority = self._env.get("AZURE_AUTHORITY_HOST") or AUTHORITY
        if not authority.startswith("https://"):
            raise CloudAuthError("AZURE_AUTHORITY_HOST: an authority host must be https")
        url = f"{authority.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        form = {"client_id": client, "scope": scope, "grant_type": "client_credentials", **proof}
        try:
            reply = self._http.send("POST", url, what="Entra ID", data=form)
        except CloudAuthError:
            raise CloudAuthError(f"AZURE_AUTHORITY_HOST {authority}: not a usable URL") from None
        if reply.status != 200:
            raise CloudAuthError(
                f"Entra ID refused a token for client {client} in tenant {tenant} "
                f"({_oauth_error(reply, secret)})"
            )
        token = reply.json("Entra ID").get("access_token")
        if not isinstance(token, str) or not token:
            raise CloudAuthError("Entra ID: no access token in the answer")
        return token

    def _managed_identity(self, scope: str, client: str | None) -> str:
        base = self._env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or IMDS
        params = {"api-version": "2018-02-01", "resource": scope.removesuffix("/.default")}
        if client:
            params["client_id"] = client
        what = "Azure instance metadata service"
        try:
            reply = self._http.send(
                "GET", f"{base.rstrip('/')}/metadata/identity/oauth2/token", what=what,
                headers={"Metadata": "true"}, params=params, timeout=2.0,
            )  # fmt: skip
        except CloudUnavailable as exc:
            raise CloudAuthError(
                "no Azure credentials: no AZURE_CLIENT_SECRET, no workload identity "
                "(AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, "
                f"AZURE_AUTHORITY_HOST), and {exc}"
            ) from None
        if reply.status != 200:
            raise CloudAuthError(f"{what}: no managed identity token (HTTP {reply.status})")
        token = reply.json(what).get("access_token")
        if not isinstance(token, str) or not token:
            raise CloudAuthError(f"{what}: no access token in the answer")
        return token

    # -- ACR ---------------------------------------------------------------------------------

    def _acr_token(self, registry: CloudRegistry, access_token: str) -> Issued:
        url = httpx.URL(f"https://{registry.registry}/oauth2/exchange")
        form = {"grant_type": "access_token", "service": registry.registry,
                "access_token": access_token}  # fmt: skip
        reply = self._http.send(
            "POST", url, what=f"ACR {registry.registry}", data=form,
            params={"api-version": ACR_API_VERSION}, headers={"Accept": "application/json"},
        )  # fmt: skip
        if reply.status != 200:
            raise CloudAuthError(
                f"ACR {registry.registry} refused to exchange the Entra ID token "
                f"({_oauth_error(reply, access_token)})"
            )
        refresh = reply.json("ACR").get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise CloudAuthError(f"ACR {registry.registry}: no refresh token in the answer")
        return Issued(USERNAME, refresh, jwt_expiry(refresh, f"ACR {registry.registry}"))


def jwt_expiry(token: str, what: str) -> float:
    """The ``exp`` claim of a JWT, read without checking its signature (as Flux does)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        raise CloudAuthError(f"{what}: the refresh token is not a JWT with an expiry") from None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise CloudAuthError(f"{what}: the refresh token's expiry is not a number")
    return float(exp)


def _oauth_error(reply: Reply, *secrets: str) -> str:
    doc = reply.json_or_empty()
    error = str(doc.get("error") or "")
    description = str(doc.get("error_description") or "")
    errors = doc.get("errors")  # ACR: {"errors": [{"code", "message"}]}
    if not error and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        error, description = str(errors[0].get("code", "")), str(errors[0].get("message", ""))
    return reply.error_text(error, description, *secrets)
