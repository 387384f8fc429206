"""Flux objects -> targets, parsed once per resourceVersion.

The informers hand over the API's objects; this turns them into targets (or problems)
and remembers each parse by resourceVersion, so a watch event costs one parse of the
object that changed, not a parse of every object. A HelmChart's target depends on its
HelmRepository too: its version is the pair of both resourceVersions.

It also counts the OCI sources (opted in or not) for ``flux_oci_sources``, and logs a
target's warnings (an interval raised to the minimum, an unreadable applied revision, a
proxy Secret it cannot use) once per change of the object.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.flux.helm_sources import (
    HelmRepositoryInfo,
    helm_chart_source,
    helm_chart_target,
    helm_repository_info,
)
from exporter.flux.policy import TagParsing
from exporter.flux.sources import is_oci_source, oci_repository_target
from exporter.flux.targets import SourceProblem, Target, TargetId

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
SourceCounts = Counter[tuple[str, str, bool]]  # (kind, namespace, opted_in) -> objects


@dataclass(frozen=True, slots=True)
class Parsed:
    version: str
    source: Target | SourceProblem | None


@dataclass(frozen=True, slots=True)
class _Repo:
    version: str
    info: HelmRepositoryInfo | None


class Catalog:
    def __init__(
        self,
        prefix: str,
        *,
        min_interval: float,
        default_interval: float,
        tag_parsing: TagParsing = TagParsing.FLUX_2_7,
    ) -> None:
        self._prefix = prefix
        self._kw = {"min_interval": min_interval, "default_interval": default_interval}
        self._tag_parsing = tag_parsing
        self._oci: dict[Key, Parsed] = {}
        self._repos: dict[Key, _Repo] = {}
        self._charts: dict[Key, Parsed] = {}
        self.parses = 0  # how many objects were parsed (not served from memory)

    def update(
        self, objects: Mapping[str, Sequence[Obj]]
    ) -> tuple[dict[TargetId, Parsed], SourceCounts]:
        """Every target of ``objects`` with its version, and the usage counts."""
        found: dict[TargetId, Parsed] = {}
        self._oci = self._parse_all(objects.get("OCIRepository", ()), self._oci, self._oci_one)
        self._repos = {
            key: self._repo(key, obj) for key, obj in _keyed(objects.get("HelmRepository", ()))
        }
        charts: dict[Key, Parsed] = {}
        for key, chart in _keyed(objects.get("HelmChart", ())):
            charts[key] = self._chart(key, chart)
        self._charts = charts
        for parsed in (*self._oci.values(), *charts.values()):
            if parsed.source is not None:
                found[parsed.source.id] = parsed
        return found, self._counts(objects)

    def _parse_all(
        self, objs: Sequence[Obj], old: dict[Key, Parsed], parse: Any
    ) -> dict[Key, Parsed]:
        new: dict[Key, Parsed] = {}
        for key, obj in _keyed(objs):
            version = _version(obj)
            previous = old.get(key)
            reuse = previous is not None and version != "" and previous.version == version
            new[key] = previous if reuse and previous is not None else parse(obj)
        return new

    def _oci_one(self, obj: Obj) -> Parsed:
        self.parses += 1
        source = oci_repository_target(obj, self._prefix, **self._kw, tag_parsing=self._tag_parsing)
        _warn(source)
        return Parsed(_version(obj), source)

    def _repo(self, key: Key, obj: Obj) -> _Repo:
        version = _version(obj)
        previous = self._repos.get(key)
        if previous is not None and version and previous.version == version:
            return previous
        self.parses += 1
        return _Repo(version, helm_repository_info(obj, self._prefix, **self._kw))

    def _chart(self, key: Key, chart: Obj) -> Parsed:
        ref = helm_chart_source(chart)
        repo = self._repos.get(ref) if ref else None
        version = f"{_version(chart)}/{repo.version if repo else '-'}"
        previous = self._charts.get(key)
        reusable = bool(_version(chart)) and (repo is None or bool(repo.version))
        if previous is not None and reusable and previous.version == version:
            return previous
        source = None
        if repo is not None and repo.info is not None and repo.info.claimed:
            self.parses += 1
            source = helm_chart_target(chart, repo.info, self._prefix, self._tag_parsing)
            _warn(source)
        return Parsed(version, source)

    def _counts(self, objects: Mapping[str, Sequence[Obj]]) -> SourceCounts:
        counts: SourceCounts = Counter()
        key = self._prefix + "enabled"
        for kind in ("OCIRepository", "HelmRepository"):
            for obj in objects.get(kind, ()):
                if is_oci_source(obj):
                    meta = obj.get("metadata") or {}
                    opted = (meta.get("annotations") or {}).get(key) == "true"
                    counts[(kind, str(meta.get("namespace", "")), opted)] += 1
        return counts


def _keyed(objs: Sequence[Obj]) -> list[tuple[Key, Obj]]:
    found = []
    for obj in objs:
        meta = obj.get("metadata") or {}
        found.append(((str(meta.get("namespace", "")), str(meta.get("name", ""))), obj))
    return found


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _warn(source: Target | SourceProblem | None) -> None:
    """Said once per change of the object: what the exporter adjusted or cannot honour."""
    if not isinstance(source, Target):
        return
    for warning in source.warnings:
        log.warning("%s: %s", source.id, warning, extra=source.id.log_fields())
    if source.applied_problem is not None:
        log.warning("%s: status.artifact.revision unreadable: %s", source.id,
                    source.applied_problem, extra=source.id.log_fields())  # fmt: skip
    if source.access.proxy_secret is not None:
        log.warning(
            "%s: spec.proxySecretRef is not used: the registry is reached directly "
            "(or through HTTPS_PROXY)", source.id, extra=source.id.log_fields(),
        )  # fmt: skip
