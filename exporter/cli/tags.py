"""One look at one repository: every tag and, given a rule, what Flux would pick.

Backs the ``tags`` command. Errors come out as ``ProbeError`` carrying the command's exit
code and a one-line reason that names the repository, never a credential. Tags are the
registry's text, not trusted: any may be listed, but only a valid OCI tag is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.flux.policy import InvalidRule, compile_rule
from exporter.model import ANONYMOUS, ErrorReason, Flavor, RepositoryRef, TagRule, TLSOptions
from exporter.registry.client import RegistryClient
from exporter.registry.dockerconfig import DockerConfigError
from exporter.registry.dockerconfig import parse as parse_docker_config
from exporter.registry.errors import RegistryError

EXIT_INVALID = 2
EXIT_REGISTRY = 3
OCI_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")  # the distribution spec's tag grammar


class ProbeError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ProbeReport:
    repository: str
    tags: tuple[str, ...]
    has_rule: bool
    selected: str | None
    digest: str | None


def probe_repository(
    url: str,
    *,
    semver_range: str | None = None,
    semver_filter: str | None = None,
    tag: str | None = None,
    flavor: str = "oci",
    docker_config: bytes | None = None,
    insecure: bool = False,
    ca_pem: bytes | None = None,
    client: RegistryClient | None = None,
) -> ProbeReport:
    if semver_range is not None and tag is not None:
        raise ProbeError(
            "--semver and --tag are exclusive (Flux uses semver when both are set)", EXIT_INVALID
        )
    if tag is not None and not OCI_TAG.fullmatch(tag):
        raise ProbeError(f"--tag {_shown(tag)} is not an OCI tag", EXIT_INVALID)
    try:
        repo = RepositoryRef.parse(url)
    except ValueError as exc:
        raise ProbeError(str(exc), EXIT_INVALID) from None
    rule = None
    if semver_range is not None:
        try:
            rule = compile_rule(TagRule(semver_range, semver_filter, Flavor(flavor)))
        except InvalidRule as exc:
            raise ProbeError(str(exc), EXIT_INVALID) from None
    elif semver_filter is not None:
        raise ProbeError("--semver-filter needs --semver", EXIT_INVALID)
    credentials = ANONYMOUS
    if docker_config is not None:
        try:
            found = parse_docker_config(docker_config).lookup(repo.registry, repo.path)
        except DockerConfigError as exc:
            raise ProbeError(f"docker config: {exc}", EXIT_INVALID) from None
        credentials = found or ANONYMOUS
    tls = TLSOptions(insecure=insecure, ca_pem=ca_pem)
    own_client = client is None
    registry = client or RegistryClient()
    try:
        tags = tuple(registry.list_tags(repo, credentials, tls))
        selected: str | None = None
        if rule is not None:
            selected = rule.select(tags)
        elif tag is not None and tag in tags:
            selected = tag
        if selected is not None and not OCI_TAG.fullmatch(selected):
            raise ProbeError(
                f"{repo}: protocol: the registry lists {_shown(selected)}, not an OCI tag",
                EXIT_REGISTRY,
            )
        digest = registry.resolve_digest(repo, selected, credentials, tls) if selected else None
    except RegistryError as exc:
        code = EXIT_INVALID if exc.reason is ErrorReason.CONFIG else EXIT_REGISTRY
        raise ProbeError(f"{repo}: {exc.reason}: {exc}", code) from None
    finally:
        if own_client:
            registry.close()
    return ProbeReport(
        repository=str(repo),
        tags=tags,
        has_rule=rule is not None or tag is not None,
        selected=selected,
        digest=digest,
    )


def _shown(tag: str) -> str:
    return repr(tag if len(tag) <= 140 else tag[:140] + "…")
