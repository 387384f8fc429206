"""ECR credentials as Flux gets them (fluxcd/pkg auth v0.54.1, ``aws`` provider).

The controller's identity is the AWS SDK's default credential chain, in its order:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``); a web identity
(IRSA: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, exchanged with STS
``AssumeRoleWithWebIdentity``); container credentials (EKS Pod Identity:
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``; ECS:
``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``); the instance metadata service (the node's
role, IMDSv2) unless ``AWS_EC2_METADATA_DISABLED=true``. Shared config and credentials
files (profiles, SSO, ``credential_process``) are not read. An object's identity is the
role of its ServiceAccount's ``eks.amazonaws.com/role-arn`` annotation, assumed with a
token of that account (audience ``sts.amazonaws.com``) and the session name
``<account>.<namespace>.<region>.fluxcd.io``.

As in Flux, the region is the ECR host's (``AWS_REGION`` is not needed): STS is asked in
that region, then ECR ``GetAuthorizationToken`` (SigV4-signed) there; ``public.ecr.aws``
asks ECR Public in us-east-1. The token decodes to ``user:password``. Endpoints follow
the SDK's variables: ``AWS_ENDPOINT_URL_STS``, ``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_ECR_PUBLIC``, then ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import httpx

from exporter.cloud.broker import Issued, ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.cloud.http import Issuer, Reply
from exporter.cloud.sigv4 import AwsKeys, sign
from exporter.flux.cloud import (
    AWS_AUDIENCE,
    CloudMismatch,
    CloudRegistry,
    aws_dns_suffix,
    aws_role_arn,
    aws_session_name,
)

STS_VERSION = "2011-06-15"
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
ECR_PUBLIC_TARGET = "SpencerFrontendService.GetAuthorizationToken"
IMDS = "http://169.254.169.254"
IMDS_TIMEOUT = 2.0  # seconds: off EC2 nothing answers there
ECS_HOST = "http://169.254.170.2"
# the hosts the SDK lets container credentials come from over plain HTTP
_CONTAINER_HOSTS = {"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"}


class AwsIssuer(Issuer):
    # -- the two identities -----------------------------------------------------------------

    def controller(self, registry: CloudRegistry) -> Issued:
        return self._ecr_token(registry, self._controller_keys(registry.region))

    def for_account(self, registry: CloudRegistry, identity: ObjectIdentity) -> Issued:
        try:
            role = aws_role_arn(identity.annotations)
        except CloudMismatch as exc:
            raise CloudAuthError(f"service account {identity}: {exc}") from None
        token = identity.token(AWS_AUDIENCE)
        session = aws_session_name(identity.name, identity.namespace, registry.region)
        keys = self.assume_role(role, token, session, registry.region)
        return self._ecr_token(registry, keys)

    # -- the default credential chain -------------------------------------------------------

    def _controller_keys(self, region: str) -> AwsKeys:
        env = self._env
        key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:
            return AwsKeys(key_id, secret, env.get("AWS_SESSION_TOKEN") or None)
        token_file = env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
        if token_file:
            role = env.get("AWS_ROLE_ARN")
            if not role:
                raise CloudAuthError("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
            try:
                token = self._read(token_file).strip()
            except OSError as exc:
                raise CloudAuthError(
                    f"web identity token file {token_file}: cannot be read ({exc.strerror})"
                ) from None
            session = env.get("AWS_ROLE_SESSION_NAME") or str(time.time_ns())
            return self.assume_role(role, token, session, region)
        if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
        ):
            return self._container_keys()
        if env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
            return self._instance_keys()
        raise CloudAuthError(
            "no AWS credentials: no AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA), "
            "no AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity), no access key, and "
            "the instance metadata service is disabled"
        )

    def assume_role(self, role: str, token: str, session: str, region: str) -> AwsKeys:
        """STS ``AssumeRoleWithWebIdentity`` (unsigned: the token is the proof)."""
        endpoint = self._endpoint("STS", f"https://sts.{region}.{aws_dns_suffix(region)}")
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": STS_VERSION,
            "RoleArn": role,
            "RoleSessionName": session,
            "WebIdentityToken": token,
        }
        reply = self._http.send("POST", endpoint, what="AWS STS", data=form)
        if reply.status != 200:
            code, message = _sts_error(reply.body)
            raise CloudAuthError(
                _scrub(
                    f"AWS STS refused AssumeRoleWithWebIdentity for role {role} "
                    f"(HTTP {reply.status} {code}: {message})",
                    token,
                )
            )
        try:
            root = ET.fromstring(reply.body)
        except ET.ParseError:
            raise CloudAuthError("AWS STS: AssumeRoleWithWebIdentity answer is not XML") from None
        found = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        if not (found.get("AccessKeyId") and found.get("SecretAccessKey")):
            raise CloudAuthError("AWS STS: AssumeRoleWithWebIdentity answered no credentials")
        return AwsKeys(
            found["AccessKeyId"],
            found["SecretAccessKey"],
            found.get("SessionToken") or None,
            _parse_time(found.get("Expiration", "")),
        )

    def _container_keys(self) -> AwsKeys:
        env = self._env
        url = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or (
            ECS_HOST + env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
        )
        parsed = httpx.URL(url)
        if parsed.scheme != "https" and not _container_host(parsed.host):
            raise CloudAuthError(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI: plain HTTP only to a loopback or the "
                "container credentials host"
            )
        headers: dict[str, str] = {}
        token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        if token_file:
            try:
                headers["Authorization"] = self._read(token_file).strip()
            except OSError as exc:
                raise CloudAuthError(
                    f"container authorization token file {token_file}: cannot be read "
                    f"({exc.strerror})"
                ) from None
        elif env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"):
            headers["Authorization"] = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        reply = self._http.send("GET", parsed, what="AWS container credentials", headers=headers)
        if reply.status != 200:
            raise CloudAuthError(f"AWS container credentials: refused (HTTP {reply.status})")
        return _keys_from_json(reply.body, "AWS container credentials")

    def _instance_keys(self) -> AwsKeys:
        base = self._env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS
        what = "AWS instance metadata service"
        try:
            reply = self._http.send(
                "PUT", f"{base.rstrip('/')}/latest/api/token", what=what,
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, timeout=IMDS_TIMEOUT,
            )  # fmt: skip
        except CloudUnavailable as exc:
            raise CloudAuthError(
                "no AWS credentials: no AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA), "
                f"no AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity), and {exc}"
            ) from None
        if reply.status != 200:
            raise CloudAuthError(f"{what}: no session token (HTTP {reply.status})")
        headers = {"X-aws-ec2-metadata-token": reply.body.decode(errors="replace").strip()}
        roles = f"{base.rstrip('/')}/latest/meta-data/iam/security-credentials/"
        reply = self._http.send("GET", roles, what=what, headers=headers, timeout=IMDS_TIMEOUT)
        role = reply.body.decode(errors="replace").strip().splitlines()[:1]
        if reply.status != 200 or not role:
            raise CloudAuthError(f"{what}: the instance has no IAM role (HTTP {reply.status})")
        reply = self._http.send(
            "GET", roles + role[0], what=what, headers=headers, timeout=IMDS_TIMEOUT
        )
        if reply.status != 200:
            raise CloudAuthError(f"{what}: no credentials for the role (HTTP {reply.status})")
        return _keys_from_json(reply.body, what)

    # -- ECR ---------------------------------------------------------------------------------

    def _ecr_token(self, registry: CloudRegistry, keys: AwsKeys) -> Issued:
        region = registry.region
        if registry.public:
            service, target, what = "ecr-public", ECR_PUBLIC_TARGET, "AWS ECR Public"
            default = f"https://api.ecr-public.{region}.{aws_dns_suffix(region)}"
        else:
            service, target, what = "ecr", ECR_TARGET, "AWS ECR"
            default = f"https://api.ecr.{region}.{aws_dns_suffix(region)}"
        endpoint = httpx.URL(self._endpoint(service.upper().replace("-", "_"), default))
        body = b"{}"
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", target)]
        signed = sign(
            "POST", endpoint.netloc.decode("ascii"), endpoint.path or "/", [], headers, body,
            keys=keys, region=region, service=service,
            when=datetime.fromtimestamp(self._clock(), UTC),
        )  # fmt: skip
        reply = self._http.send(
            "POST", endpoint, what=what, headers={**dict(headers), **signed.headers}, content=body
        )
        if reply.status != 200:
            code, message = _json_error(reply)
            raise CloudAuthError(
                f"{what} refused GetAuthorizationToken in {region} "
                f"(HTTP {reply.status} {code}: {message})"
            )
        return _decode_authorization(reply.body, what)

    def _endpoint(self, service: str, default: str) -> str:
        return (
            self._env.get(f"AWS_ENDPOINT_URL_{service}")
            or self._env.get("AWS_ENDPOINT_URL")
            or default
        )


def _decode_authorization(body: bytes, what: str) -> Issued:
    try:
        doc = json.loads(body)
        data = doc["authorizationData"]
        if isinstance(data, list):  # ECR: one per registry id; ECR Public: one object
            data = data[0]
        token, expires_at = data["authorizationToken"], data["expiresAt"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise CloudAuthError(f"{what}: GetAuthorizationToken answered no token") from None
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, ValueError, TypeError):
        raise CloudAuthError(f"{what}: the authorization token is not base64") from None
    parts = decoded.split(":")
    if len(parts) != 2:  # Flux's check
        raise CloudAuthError(f"{what}: invalid authorization token format")
    return Issued(parts[0], parts[1], _expiry(expires_at))


def _expiry(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return _parse_time(value) or 0.0
    return 0.0


def _parse_time(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _keys_from_json(body: bytes, what: str) -> AwsKeys:
    try:
        doc = json.loads(body)
        return AwsKeys(
            str(doc["AccessKeyId"]),
            str(doc["SecretAccessKey"]),
            str(doc.get("Token") or "") or None,
            _parse_time(str(doc.get("Expiration") or "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CloudAuthError(f"{what}: the answer holds no credentials") from None


def _sts_error(body: bytes) -> tuple[str, str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", "no error document"
    found = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
    return found.get("Code", ""), _short(found.get("Message", ""))


def _json_error(reply: Reply) -> tuple[str, str]:
    code = reply.headers.get("x-amzn-ErrorType", "").split(":")[0]
    try:
        doc = json.loads(reply.body)
    except ValueError:
        xml_code, message = _sts_error(reply.body)  # an XML error document, then
        return code or xml_code, message
    if not isinstance(doc, dict):
        return code, ""
    code = code or str(doc.get("__type", "")).rsplit("#", 1)[-1]
    return code, _short(str(doc.get("message") or doc.get("Message") or ""))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "…"


def _scrub(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _container_host(host: str) -> bool:
    if host in _CONTAINER_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
