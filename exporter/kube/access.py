"""Registry access for one Flux object, read as Flux reads it, from its own namespace only.

- ``secretRef``: a docker config Secret (``.dockerconfigjson`` or legacy ``.dockercfg``);
  for an OCI HelmRepository also ``username``/``password`` keys;
- ``serviceAccountName``: that account's ``imagePullSecrets``, merged after ``secretRef``;
- ``certSecretRef``: ``ca.crt`` (extends the system pool) and ``tls.crt``/``tls.key``
  (legacy ``caFile``/``certFile``/``keyFile`` keys are read too);
- ``insecure``: plain HTTP allowed.

A Secret is only ever looked up in the object's namespace, so one tenant cannot point at
another tenant's credentials. Secrets are cached briefly (``ttl``) because a pass touches
many objects that share one pull secret. Failures are ``AccessError`` with reason
``config``; messages name the Secret, never its content.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from exporter.kube import rest
from exporter.model import ANONYMOUS, Credentials, ErrorReason, RepositoryRef, TLSOptions
from exporter.registry.dockerconfig import DockerConfig, DockerConfigError, merge
from exporter.registry.dockerconfig import parse as parse_docker_config


class AccessError(Exception):
    reason: ClassVar[ErrorReason] = ErrorReason.CONFIG


@dataclass(frozen=True, slots=True)
class AccessRefs:
    """What a Flux object says about registry access (names only, never content)."""

    namespace: str
    secret_name: str | None = None
    service_account: str | None = None
    cert_secret_name: str | None = None
    insecure: bool = False
    basic_auth_keys: bool = False  # HelmRepository: username/password keys are allowed


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    credentials: Credentials
    tls: TLSOptions


class AccessResolver:
    """Turns ``AccessRefs`` into credentials and TLS options for one repository."""

    def __init__(
        self, api: k8s.ApiClient, *, clock: Callable[[], float], ttl: float = 30.0
    ) -> None:
        self._api = api
        self._clock = clock
        self._ttl = ttl
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
            for name in self._pull_secrets(refs.namespace, refs.service_account):
                data = self._secret(refs.namespace, name)
                configs.append(_docker_config(data, refs.namespace, name))
        if credentials is None and configs:
            credentials = merge(configs).lookup(repo.registry, repo.path)
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

    def _pull_secrets(self, namespace: str, account: str) -> list[str]:
        def load() -> list[str]:
            try:
                sa = rest.call(
                    self._api, "GET", "/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
                    params={"namespace": namespace, "name": account},
                )  # fmt: skip
            except ApiException as exc:
                raise AccessError(
                    _api_problem("service account", namespace, account, exc)
                ) from None
            refs = sa.get("imagePullSecrets") or []
            return [ref["name"] for ref in refs if isinstance(ref, dict) and ref.get("name")]

        result: list[str] = self._cached(("sa", namespace, account), load)
        return result


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
