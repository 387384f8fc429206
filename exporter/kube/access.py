"""Registry access for one Flux object, read as Flux reads it, from its own namespace only.

- ``secretRef``: a docker config Secret (``.dockerconfigjson`` or legacy ``.dockercfg``);
  for an OCI HelmRepository also ``username``/``password`` keys;
- ``serviceAccountName``: that account's ``imagePullSecrets``, merged after ``secretRef``;
- ``certSecretRef``: ``ca.crt`` (extends the system pool) and ``tls.crt``/``tls.key``
  (legacy ``caFile``/``certFile``/``keyFile`` keys are read too);
- ``insecure``: plain HTTP allowed;
- ``provider`` aws, azure or gcp: registry credentials from a cloud identity, when Flux
  would use it (``exporter.flux.cloud``): the exporter's own identity, or, for an
  OCIRepository with ``serviceAccountName``, that account's (object-level workload
  identity: a token from the TokenRequest API, only when the exporter's
  ``object_level_workload_identity`` setting is on, as Flux's feature gate must be).

A Secret is only ever looked up in the object's namespace, so one tenant cannot point at
another tenant's credentials. Secrets are cached briefly (``ttl``) because a pass touches
many objects that share one pull secret. Failures are ``AccessError``: reason ``config``
for a Secret or a ServiceAccount that cannot be used, ``auth`` (or ``unavailable``) for a
cloud identity that yields no credentials; messages name the Secret, the account or what
the cloud refused, never a secret or a token.
"""

from __future__ import annotations

import base64
import binascii
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from exporter.cloud.broker import ObjectIdentity
from exporter.cloud.errors import CloudAuthError, CloudError, CloudUnavailable
from exporter.flux.cloud import (
    FEATURE_GATE,
    CloudMismatch,
    CloudRegistry,
    Provider,
    cloud_provider,
)
from exporter.kube import rest
from exporter.model import ANONYMOUS, Credentials, ErrorReason, RepositoryRef, TLSOptions
from exporter.registry.dockerconfig import DockerConfig, DockerConfigError, merge
from exporter.registry.dockerconfig import parse as parse_docker_config

# fluxcd/pkg auth's ErrDefaultServiceAccountNotFound
LOCKDOWN = (
    "the specified default service account does not exist in the object namespace. your "
    "cluster is subject to multi-tenant workload identity lockdown, reach out to your "
    "cluster administrator for help"
)


class AccessError(Exception):
    def __init__(self, message: str, reason: ErrorReason = ErrorReason.CONFIG) -> None:
        super().__init__(message)
        self.reason = reason


class CloudSource(Protocol):
    """Where cloud credentials come from (``exporter.cloud.broker.CloudCredentials``)."""

    def match(self, provider: Provider, registry: str) -> CloudRegistry: ...

    def credentials(
        self, registry: CloudRegistry, identity: ObjectIdentity | None = None
    ) -> Credentials: ...


@dataclass(frozen=True, slots=True)
class AccessRefs:
    """What a Flux object says about registry access (names only, never content)."""

    namespace: str
    secret_name: str | None = None
    service_account: str | None = None
    cert_secret_name: str | None = None
    insecure: bool = False
    basic_auth_keys: bool = False  # HelmRepository: username/password keys are allowed
    provider: str = "generic"  # spec.provider
    # OCIRepository: its ServiceAccount (or the default one) may carry a cloud identity;
    # an OCI HelmRepository's provider always uses the exporter's own
    account_identity: bool = True


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    credentials: Credentials
    tls: TLSOptions


class AccessResolver:
    """Turns ``AccessRefs`` into credentials and TLS options for one repository."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        clock: Callable[[], float],
        ttl: float = 30.0,
        cloud: CloudSource | None = None,
        object_level_identity: bool = False,
        default_service_account: str = "",
    ) -> None:
        self._api = api
        self._clock = clock
        self._ttl = ttl
        self._cloud = cloud
        self._object_level = object_level_identity
        self._default_account = default_service_account
        self._cache: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def resolve(self, refs: AccessRefs, repo: RepositoryRef) -> RegistryAccess:
        configs: list[DockerConfig] = []
        credentials: Credentials | None = None
        if refs.secret_name:
            data = self._secret(refs.namespace, refs.secret_name)
            if refs.basic_auth_keys and ("username" in data or "password" in data):
                credentials = Credentials(
                    username=_text(data, "username", refs.secret_name),
                    password=_text(data, "password", refs.secret_name),
                )
            else:
                configs.append(_docker_config(data, refs.namespace, refs.secret_name))
        if refs.service_account:
            for name in self._account(refs.namespace, refs.service_account).pull_secrets:
                data = self._secret(refs.namespace, name)
                configs.append(_docker_config(data, refs.namespace, name))
        if credentials is None and configs:
            credentials = merge(configs).lookup(repo.registry, repo.path)
        provider = cloud_provider(refs.provider)
        if provider is not None and credentials is None and not configs:
            # Flux's order: a Secret or pull secrets, when there are any, win over the provider
            credentials = self._cloud_credentials(refs, provider, repo)
        tls = TLSOptions(insecure=refs.insecure)
        if refs.cert_secret_name:
            data = self._secret(refs.namespace, refs.cert_secret_name)
            tls = TLSOptions(
                insecure=refs.insecure,
                ca_pem=data.get("ca.crt") or data.get("caFile"),
                client_cert_pem=data.get("tls.crt") or data.get("certFile"),
                client_key_pem=data.get("tls.key") or data.get("keyFile"),
            )
            if (tls.client_cert_pem is None) != (tls.client_key_pem is None):
                raise AccessError(
                    f"secret {refs.namespace}/{refs.cert_secret_name}: "
                    "a client certificate needs both tls.crt and tls.key"
                )
        return RegistryAccess(credentials or ANONYMOUS, tls)

    def _cloud_credentials(
        self, refs: AccessRefs, provider: Provider, repo: RepositoryRef
    ) -> Credentials:
        if self._cloud is None:
            raise AccessError(
                f"spec.provider {provider.value}: no cloud credentials here", ErrorReason.AUTH
            )
        try:
            registry = self._cloud.match(provider, repo.registry)
        except CloudMismatch as exc:
            raise AccessError(f"spec.provider {provider.value}: {exc}", ErrorReason.AUTH) from None
        except CloudError as exc:
            raise AccessError(f"spec.provider {provider.value}: {exc}", exc.reason) from None
        identity: ObjectIdentity | None = None
        name = refs.service_account if refs.account_identity else None
        lockdown = not name and refs.account_identity and bool(self._default_account)
        if lockdown:
            name = self._default_account  # Flux's multi-tenant lockdown
        if name:
            if not self._object_level:
                raise AccessError(
                    f"spec.serviceAccountName with spec.provider {provider.value} is object-level "
                    f"workload identity (Flux's {FEATURE_GATE} feature gate): turn on the "
                    "exporter's object_level_workload_identity setting to use it",
                    ErrorReason.CONFIG,
                )
            try:
                account = self._account(refs.namespace, name)
            except _AccountMissing:
                if not lockdown:
                    raise
                raise AccessError(
                    f"default service account {refs.namespace}/{name}: {LOCKDOWN}",
                    ErrorReason.AUTH,
                ) from None
            identity = ObjectIdentity(
                refs.namespace,
                name,
                account.annotations,
                functools.partial(self._account_token, refs.namespace, name),
            )
        try:
            return self._cloud.credentials(registry, identity)
        except CloudError as exc:
            raise AccessError(f"spec.provider {provider.value}: {exc}", exc.reason) from None

    def _account_token(self, namespace: str, name: str, audience: str) -> str:
        """A token of the ServiceAccount for ``audience`` (TokenRequest API, default lifetime)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience]},
        }
        try:
            answer = rest.call(
                self._api, "POST", "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                params={"namespace": namespace, "name": name}, body=body,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 403:
                raise CloudAuthError(
                    f"service account {namespace}/{name}: the exporter may not create its "
                    "tokens (RBAC: create serviceaccounts/token)"
                ) from None
            raise CloudAuthError(
                _api_problem("token of service account", namespace, name, exc)
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise CloudUnavailable(
                f"service account {namespace}/{name}: no token, the API server is "
                f"unreachable ({type(exc).__name__})"
            ) from None
        status = answer.get("status") if isinstance(answer, dict) else None
        token = status.get("token") if isinstance(status, dict) else None
        if not isinstance(token, str) or not token:
            raise CloudAuthError(f"service account {namespace}/{name}: no token was issued")
        return token

    # -- reads, cached briefly --------------------------------------------------------------

    def _cached(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (now, value)
            if len(self._cache) > 4096:
                oldest = sorted(self._cache.items(), key=lambda kv: kv[1][0])[:1024]
                for k, _ in oldest:
                    del self._cache[k]
        return value

    def _secret(self, namespace: str, name: str) -> dict[str, bytes]:
        def load() -> dict[str, bytes]:
            try:
                secret = rest.call(
                    self._api, "GET", "/api/v1/namespaces/{namespace}/secrets/{name}",
                    params={"namespace": namespace, "name": name},
                )  # fmt: skip
            except ApiException as exc:
                raise AccessError(_api_problem("secret", namespace, name, exc)) from None
            out: dict[str, bytes] = {}
            for key, value in (secret.get("data") or {}).items():
                try:
                    out[key] = base64.b64decode(value or "", validate=True)
                except (binascii.Error, ValueError):
                    raise AccessError(
                        f"secret {namespace}/{name}: key {key!r} is not valid base64"
                    ) from None
            return out

        result: dict[str, bytes] = self._cached(("secret", namespace, name), load)
        return result

    def _account(self, namespace: str, account: str) -> _Account:
        def load() -> _Account:
            try:
                sa = rest.call(
                    self._api, "GET", "/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
                    params={"namespace": namespace, "name": account},
                )  # fmt: skip
            except ApiException as exc:
                problem = _api_problem("service account", namespace, account, exc)
                if exc.status == 404:
                    raise _AccountMissing(problem) from None
                raise AccessError(problem) from None
            refs = sa.get("imagePullSecrets") or []
            annotations = (sa.get("metadata") or {}).get("annotations") or {}
            return _Account(
                tuple(r["name"] for r in refs if isinstance(r, dict) and r.get("name")),
                {k: v for k, v in annotations.items() if isinstance(v, str)},
            )

        result: _Account = self._cached(("sa", namespace, account), load)
        return result


class _AccountMissing(AccessError):
    pass


@dataclass(frozen=True, slots=True)
class _Account:
    pull_secrets: tuple[str, ...]
    annotations: Mapping[str, str]


def _docker_config(data: Mapping[str, bytes], namespace: str, name: str) -> DockerConfig:
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if raw is None:
        raise AccessError(f"secret {namespace}/{name}: no .dockerconfigjson or .dockercfg key")
    try:
        return parse_docker_config(raw)
    except DockerConfigError as exc:
        raise AccessError(f"secret {namespace}/{name}: {exc}") from None


def _text(data: Mapping[str, bytes], key: str, secret: str) -> str:
    try:
        return data.get(key, b"").decode()
    except UnicodeDecodeError:
        raise AccessError(f"secret {secret}: key {key!r} is not UTF-8") from None


def _api_problem(what: str, namespace: str, name: str, exc: ApiException) -> str:
    if exc.status == 404:
        return f"{what} {namespace}/{name} not found"
    if exc.status == 403:
        return f"{what} {namespace}/{name}: access forbidden to the exporter's service account"
    return f"{what} {namespace}/{name}: API server answered HTTP {exc.status}"
