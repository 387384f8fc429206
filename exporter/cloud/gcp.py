"""Artifact Registry and Container Registry credentials as Flux gets them (fluxcd/pkg auth
v0.54.1, ``gcp`` provider): an OAuth2 access token, username ``oauth2accesstoken``.

The controller's token comes from Google's application default credentials, as far as
they need no private key: ``GOOGLE_APPLICATION_CREDENTIALS`` naming an ``external_account``
configuration with a file-sourced subject token (workload identity federation outside
GKE), else the metadata server (``GCE_METADATA_HOST``, default 169.254.169.254; header
``Metadata-Flavor: Google``): GKE workload identity, or the node's service account. A
service account key file is refused (signing it would need a crypto library).

An object's token (object-level workload identity): a token of its ServiceAccount whose
audience is the workload identity provider of the ``gcp.auth.fluxcd.io/workload-identity-provider``
annotation, or on GKE the cluster's pool (``<project>.svc.id.goog``, read from the
metadata server with the cluster's location and name); exchanged at Google's STS
(RFC 8693 token exchange), then, when ``iam.gke.io/gcp-service-account`` names one, for
that service account's token (``generateAccessToken``, one hour), as the Go oauth2
``externalaccount`` package does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from exporter.cloud.broker import Issued, ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.cloud.http import Issuer, Reply
from exporter.flux.cloud import (
    CloudMismatch,
    CloudRegistry,
    gcp_provider_audience,
    gcp_service_account,
    gke_audiences,
)

USERNAME = "oauth2accesstoken"
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
)
METADATA_HOST = "169.254.169.254"
STS_URL = "https://sts.googleapis.com/v1/token"
IAM_URL = (
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken"
)
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
METADATA = {"Metadata-Flavor": "Google"}


class GcpIssuer(Issuer):
    _gke: tuple[str, str] | None = None  # (token audience, STS audience), once read

    def controller(self, registry: CloudRegistry) -> Issued:
        config = self._env.get("GOOGLE_APPLICATION_CREDENTIALS")
        if config:
            return self._external_account(config)
        return self._metadata_token()

    def for_account(self, registry: CloudRegistry, identity: ObjectIdentity) -> Issued:
        try:
            audience = gcp_provider_audience(identity.annotations)
            email = gcp_service_account(identity.annotations)
        except CloudMismatch as exc:
            raise CloudAuthError(f"service account {identity}: {exc}") from None
        if audience is None:  # on GKE: the cluster's workload identity pool
            token_audience, sts_audience = self._gke_audiences()
        else:
            token_audience = sts_audience = audience
        subject = identity.token(token_audience)
        return self._federated(subject, JWT_TYPE, sts_audience, email)

    # -- the controller's identity -----------------------------------------------------------

    def _metadata_token(self) -> Issued:
        path = "instance/service-accounts/default/token"
        reply = self._metadata(path, {"scopes": ",".join(SCOPES)})
        if reply.status != 200:
            raise CloudAuthError(
                f"GCE metadata server: no token for the default service account "
                f"(HTTP {reply.status}; is GKE workload identity set up for this pod?)"
            )
        doc = reply.json("GCE metadata server")
        return self._issued(doc.get("access_token"), doc.get("expires_in"), "GCE metadata server")

    def _metadata(self, path: str, params: Mapping[str, str] | None = None) -> Reply:
        host = self._env.get("GCE_METADATA_HOST") or METADATA_HOST
        try:
            return self._http.send(
                "GET", f"http://{host}/computeMetadata/v1/{path}", what="GCE metadata server",
                headers=METADATA, params=params,
            )  # fmt: skip
        except CloudUnavailable as exc:
            raise CloudAuthError(f"no GCP credentials: {exc}") from None

    def _gke_audiences(self) -> tuple[str, str]:
        if self._gke is None:
            found = []
            for what, path in (
                ("project ID", "project/project-id"),
                ("location", "instance/attributes/cluster-location"),
                ("name", "instance/attributes/cluster-name"),
            ):
                reply = self._metadata(path)
                value = reply.body.decode(errors="replace").strip()
                if reply.status != 200 or not value:
                    raise CloudAuthError(
                        f"failed to get GKE cluster {what} from the metadata service "
                        f"(HTTP {reply.status})"
                    )
                found.append(value)
            self._gke = gke_audiences(*found)
        return self._gke

    def _external_account(self, path: str) -> Issued:
        try:
            config = json.loads(self._read(path))
        except (OSError, ValueError) as exc:
            raise CloudAuthError(
                f"GOOGLE_APPLICATION_CREDENTIALS {path}: cannot be read ({type(exc).__name__})"
            ) from None
        kind = config.get("type") if isinstance(config, dict) else None
        if kind != "external_account":
            raise CloudAuthError(
                f"GOOGLE_APPLICATION_CREDENTIALS {path}: type {str(kind)[:40]!r} is not "
                "supported (only external_account with a credential_source file)"
            )
        source = config.get("credential_source") or {}
        token_file = source.get("file") if isinstance(source, dict) else None
        if not isinstance(token_file, str):
            raise CloudAuthError(
                f"GOOGLE_APPLICATION_CREDENTIALS {path}: only a credential_source file is supported"
            )
        try:
            subject = self._read(token_file).strip()
        except OSError as exc:
            raise CloudAuthError(
                f"subject token file {token_file}: cannot be read ({exc.strerror})"
            ) from None
        form = source.get("format") or {}
        if isinstance(form, dict) and form.get("type") == "json":
            try:
                subject = str(json.loads(subject)[form["subject_token_field_name"]])
            except (ValueError, KeyError, TypeError):
                raise CloudAuthError(
                    f"subject token file {token_file}: not the JSON its format names"
                ) from None
        impersonation = config.get("service_account_impersonation_url")
        email = None
        if isinstance(impersonation, str) and impersonation:
            email = impersonation.rsplit("/", 1)[-1].removesuffix(":generateAccessToken")
        return self._federated(
            subject,
            str(config.get("subject_token_type") or JWT_TYPE),
            str(config.get("audience") or ""),
            email,
        )

    # -- federation --------------------------------------------------------------------------

    def _federated(
        self, subject: str, subject_type: str, audience: str, email: str | None
    ) -> Issued:
        scopes = ("https://www.googleapis.com/auth/cloud-platform",) if email else SCOPES
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": audience,
            "scope": " ".join(scopes),
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": subject,
            "subject_token_type": subject_type,
        }
        reply = self._http.send("POST", STS_URL, what="Google STS", data=form)
        if reply.status != 200:
            raise CloudAuthError(
                f"Google STS refused the token exchange for audience {audience} "
                f"({_oauth_error(reply, subject)})"
            )
        doc = reply.json("Google STS")
        federated = self._issued(doc.get("access_token"), doc.get("expires_in"), "Google STS")
        if email is None:
            return federated
        reply = self._http.send(
            "POST", IAM_URL.format(email), what="Google IAM credentials",
            headers={"Authorization": f"Bearer {federated.password}"},
            content=json.dumps({"scope": list(SCOPES), "lifetime": "3600s"}).encode(),
        )  # fmt: skip
        if reply.status != 200:
            raise CloudAuthError(
                f"Google IAM refused to impersonate {email} "
                f"({_oauth_error(reply, subject, federated.password)})"
            )
        doc = reply.json("Google IAM credentials")
        token, expiry = doc.get("accessToken"), doc.get("expireTime")
        if not isinstance(token, str) or not token or not isinstance(expiry, str):
            raise CloudAuthError("Google IAM credentials: no access token in the answer")
        try:
            expires_at = datetime.fromisoformat(expiry).timestamp()
        except ValueError:
            raise CloudAuthError("Google IAM credentials: invalid expireTime") from None
        return Issued(USERNAME, token, expires_at)

    def _issued(self, token: Any, expires_in: Any, what: str) -> Issued:
        if not isinstance(token, str) or not token:
            raise CloudAuthError(f"{what}: no access token in the answer")
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            raise CloudAuthError(f"{what}: invalid expiry in the answer")
        return Issued(USERNAME, token, self._clock() + float(expires_in))


def _oauth_error(reply: Reply, *secrets: str) -> str:
    """``HTTP <status> <error>: <description>`` of an OAuth2 or Google API error answer."""
    doc = reply.json_or_empty()
    raw = doc.get("error")
    if isinstance(raw, dict):  # Google API errors: {"error": {"status", "message"}}
        error, description = str(raw.get("status", "")), str(raw.get("message", ""))
    else:
        error, description = str(raw or ""), str(doc.get("error_description") or "")
    return reply.error_text(error, description, *secrets)
