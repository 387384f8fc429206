"""Docker config JSON (``.dockerconfigjson``, legacy ``.dockercfg``) → credentials per repository.

Flux resolves an OCIRepository's ``secretRef`` and service-account pull secrets with
kubelet's credential keyring, so we match keys the same way, or we would poll with
credentials Flux does not use. Kubelet's rules (pkg/credentialprovider, keyring.go):

- a key is ``[scheme://]host[:port][/path]``; a leading ``/v1/`` or ``/v2/`` path is dropped,
  so Docker Hub's ``https://index.docker.io/v1/`` becomes ``index.docker.io``;
- host parts match one by one with globs (``*.example.com`` matches one label, never two),
  the port must be equal, and the key's path must be a string prefix of the repository's;
- keys are tried in reverse lexicographic order: longer paths before shorter, literal
  hosts before globs; the first match wins;
- when nothing matches a Docker Hub repository, the ``index.docker.io`` entry applies.

Pure: parsing only, no I/O. Error messages name keys, never a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from exporter.model import Credentials

DOCKER_HUB = "index.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class DockerConfigError(ValueError):
    """The Secret's docker config cannot be used; the message is safe to log."""


@dataclass(frozen=True)
class _Entry:
    key: str  # normalised: host[:port][/path]
    host_parts: tuple[str, ...]
    port: str
    path: str
    credentials: Credentials


def _split_key(raw: str) -> tuple[str, str, str]:
    """(host, port, path) of a config key or a repository reference, kubelet-normalised."""
    value = raw.strip()
    for scheme in ("https://", "http://"):
        if value.lower().startswith(scheme):
            value = value[len(scheme) :]
            break
    hostport, slash, path = value.partition("/")
    path = slash + path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    if path == "/":
        path = ""
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return host.lower(), port, path


def _match(entry: _Entry, host: str, port: str, path: str) -> bool:
    if entry.port != port:
        return False
    parts = host.split(".")
    if len(parts) != len(entry.host_parts):
        return False
    if not all(fnmatchcase(t, g) for g, t in zip(entry.host_parts, parts, strict=True)):
        return False
    return path.startswith(entry.path)


@dataclass(frozen=True)
class DockerConfig:
    """Credentials by registry key, in kubelet's lookup order."""

    entries: tuple[_Entry, ...] = ()

    def lookup(self, registry: str, repository_path: str) -> Credentials | None:
        """Credentials for ``registry`` (``host[:port]``) and ``repository_path``, or None."""
        host, port, _ = _split_key(registry)
        path = "/" + repository_path.strip("/")
        for entry in self.entries:
            if _match(entry, host, port, path):
                return entry.credentials
        if host in DOCKER_HUB_ALIASES and not port:
            for entry in self.entries:
                if entry.key == DOCKER_HUB:
                    return entry.credentials
        return None

    def __len__(self) -> int:
        return len(self.entries)


def _ordered(entries: Iterable[_Entry]) -> tuple[_Entry, ...]:
    # Stable: among equal keys the earlier (e.g. the secretRef's) stays first.
    return tuple(sorted(entries, key=lambda e: e.key, reverse=True))


def merge(configs: Iterable[DockerConfig]) -> DockerConfig:
    """One config from several (``secretRef`` first, then service-account pull secrets)."""
    return DockerConfig(_ordered(e for config in configs for e in config.entries))


def _credentials(key: str, raw: Mapping[str, object]) -> Credentials | None:
    def text(name: str) -> str | None:
        value = raw.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise DockerConfigError(f"entry {key!r}: field {name!r} is not a string")
        return value

    username, password = text("username"), text("password")
    encoded = text("auth")
    if encoded is not None:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise DockerConfigError(f"entry {key!r}: auth is not base64 of user:password") from None
        if ":" not in decoded:
            raise DockerConfigError(f"entry {key!r}: auth is not base64 of user:password")
        username, _, password = decoded.partition(":")
    identity, registry_token = text("identitytoken"), text("registrytoken")
    creds = Credentials(
        username=username, password=password, identity_token=identity, registry_token=registry_token
    )
    return None if creds.kind == "anonymous" else creds


def parse(data: bytes | str) -> DockerConfig:
    """Parse ``.dockerconfigjson`` (``{"auths": {...}}``) or legacy ``.dockercfg`` (``{...}``)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DockerConfigError("docker config is not valid JSON") from None
    if not isinstance(doc, dict):
        raise DockerConfigError("docker config is not a JSON object")
    auths = (
        doc.get("auths", doc) if isinstance(doc.get("auths"), dict) or "auths" not in doc else None
    )
    if not isinstance(auths, dict):
        raise DockerConfigError("docker config: 'auths' is not an object")
    entries = []
    for key, raw in auths.items():
        if not isinstance(raw, dict):
            raise DockerConfigError(f"entry {key!r} is not an object")
        creds = _credentials(key, raw)
        host, port, path = _split_key(key)
        if creds is None or not host:
            continue
        normalised = f"{host}:{port}{path}" if port else f"{host}{path}"
        entries.append(_Entry(normalised, tuple(host.split(".")), port, path, creds))
    return DockerConfig(_ordered(entries))
