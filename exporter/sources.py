"""Raw Flux objects -> what to watch and what Flux applied.

Every Flux field path the exporter reads is in this module, so a Flux API change is
one diff here. Input is the object as the API server returns it (``apiVersion``,
``kind``, ``metadata``, ``spec``, ``status``); v1 and v1beta2 OCIRepository share the
fields read here. Nothing is trusted to be well-formed: missing or mistyped fields
read as absent.

An object is ours when ``<prefix>enabled`` is present and not ``"false"``; an invalid
value there is reported (a typo must not silently opt out). For HelmCharts the opt-in
and the options come from the OCI HelmRepository (a static object since Flux 2.2 that
cannot itself be reconciled); a HelmChart can still opt out with ``enabled: "false"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.annotations import (
    ENABLED,
    REQUESTED_REVISION,
    OptionsResult,
    opted_out,
    parse_options,
)
from exporter.model import Flavor, RepositoryRef, TagRule
from exporter.policy import is_pinned_chart_version
from exporter.revision import (
    AppliedRevision,
    RevisionProblem,
    is_digest,
    is_tag,
    parse_chart_revision,
    parse_oci_revision,
)
from exporter.targets import (
    Access,
    ErrorReason,
    SourceProblem,
    Target,
    TargetId,
    TargetKind,
    WatchRule,
)

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
SUPPORTED_PROVIDERS = frozenset({"", "generic"})
_CHART_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")

Obj = Mapping[str, Any]


def _get(obj: Obj, *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _text(obj: Obj, *path: str) -> str | None:
    value = _get(obj, *path)
    return value if isinstance(value, str) and value else None


def _flag(obj: Obj, *path: str) -> bool:
    return _get(obj, *path) is True


def _annotations(obj: Obj) -> dict[str, str]:
    raw = _get(obj, "metadata", "annotations")
    if not isinstance(raw, Mapping):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def _claimed(annotations: Mapping[str, str], prefix: str) -> bool:
    return prefix + ENABLED in annotations and not opted_out(annotations, prefix)


def _id(obj: Obj, kind: TargetKind) -> TargetId:
    return TargetId(
        kind, _text(obj, "metadata", "namespace") or "", _text(obj, "metadata", "name") or ""
    )


def _int(obj: Obj, *path: str) -> int | None:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ready(obj: Obj) -> tuple[bool | None, str | None]:
    conditions = _get(obj, "status", "conditions")
    if not isinstance(conditions, list):
        return None, None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            status = condition.get("status")
            reason = condition.get("reason")
            ready = {"True": True, "False": False}.get(status) if isinstance(status, str) else None
            return ready, reason if isinstance(reason, str) else None
    return None, None


def _access(obj: Obj) -> Access:
    return Access(
        secret=_text(obj, "spec", "secretRef", "name"),
        service_account=_text(obj, "spec", "serviceAccountName"),
        cert_secret=_text(obj, "spec", "certSecretRef", "name"),
        proxy_secret=_text(obj, "spec", "proxySecretRef", "name"),
        insecure=_flag(obj, "spec", "insecure"),
        provider=_text(obj, "spec", "provider") or "generic",
    )


def _status_fields(obj: Obj) -> dict[str, Any]:
    """The fields every target reads the same way from status and annotations."""
    annotations = _annotations(obj)
    ready, ready_reason = _ready(obj)
    return {
        "api_version": _text(obj, "apiVersion") or "",
        "generation": _int(obj, "metadata", "generation") or 0,
        "suspended": _flag(obj, "spec", "suspend"),
        "artifact_updated_at": _text(obj, "status", "artifact", "lastUpdateTime"),
        "ready": ready,
        "ready_reason": ready_reason,
        "observed_generation": _int(obj, "status", "observedGeneration"),
        "last_handled_reconcile_at": _text(obj, "status", "lastHandledReconcileAt"),
        "requested_at": annotations.get(REQUESTED_AT),
    }


def _applied(parsed: AppliedRevision | RevisionProblem | None) -> dict[str, Any]:
    if isinstance(parsed, RevisionProblem):
        return {"applied": None, "applied_problem": parsed.reason}
    return {"applied": parsed, "applied_problem": None}


def is_oci_source(obj: Obj) -> bool:
    """Whether an object is a Flux OCI source at all (for usage counts, opted in or not)."""
    kind = obj.get("kind")
    return kind == "OCIRepository" or (
        kind == "HelmRepository" and _get(obj, "spec", "type") == "oci"
    )


def _oci_rule(obj: Obj, problems: list[str]) -> WatchRule:
    """``spec.ref`` with Flux's precedence: digest > semver > tag > ``latest``."""
    digest = _text(obj, "spec", "ref", "digest")
    semver = _text(obj, "spec", "ref", "semver")
    tag = _text(obj, "spec", "ref", "tag")
    if digest is not None:
        if not is_digest(digest):
            problems.append(f"spec.ref.digest {digest[:80]!r} is not a sha256/sha512 digest")
        return WatchRule.pinned(digest=digest)
    if semver is not None:
        helm_layer = _get(obj, "spec", "layerSelector", "mediaType") == HELM_CHART_LAYER
        flavor = Flavor.OCI_CHART if helm_layer else Flavor.OCI
        return WatchRule.semver(TagRule(semver, _text(obj, "spec", "ref", "semverFilter"), flavor))
    tag = tag or "latest"
    if not is_tag(tag):
        problems.append(f"spec.ref.tag {tag[:80]!r} is not a valid OCI tag")
    return WatchRule.mutable_tag(tag)


def _repository(url: str | None, field: str, problems: list[str]) -> RepositoryRef | None:
    if url is None:
        problems.append(f"{field} is missing")
        return None
    try:
        return RepositoryRef.parse(url)
    except ValueError as exc:
        problems.append(f"{field}: {exc}")
        return None


def _unsupported(access: Access) -> str | None:
    if access.provider not in SUPPORTED_PROVIDERS:
        return (
            f"spec.provider {access.provider[:40]!r}: cloud workload identity cannot be "
            "reproduced outside the Flux controller"
        )
    return None


def oci_repository_target(
    obj: Obj, prefix: str, *, min_interval: float, default_interval: float
) -> Target | SourceProblem | None:
    """The target for an OCIRepository, a problem, or None when it has not opted in."""
    annotations = _annotations(obj)
    if obj.get("kind") != "OCIRepository" or not _claimed(annotations, prefix):
        return None
    target_id = _id(obj, TargetKind.OCI_REPOSITORY)
    result = parse_options(
        annotations, prefix, min_interval=min_interval, default_interval=default_interval
    )
    problems = list(result.problems)
    repository = _repository(_text(obj, "spec", "url"), "spec.url", problems)
    rule = _oci_rule(obj, problems)
    access = _access(obj)
    fields = _status_fields(obj)
    if problems or repository is None or result.options is None:
        return SourceProblem(
            target_id, fields["api_version"], "ocirepositories", ErrorReason.CONFIG, tuple(problems)
        )
    unsupported = _unsupported(access)
    if unsupported is not None:
        return SourceProblem(
            target_id,
            fields["api_version"],
            "ocirepositories",
            ErrorReason.UNSUPPORTED,
            (unsupported,),
        )
    raw = _text(obj, "status", "artifact", "revision")
    return Target(
        id=target_id,
        plural="ocirepositories",
        repository=repository,
        rule=rule,
        options=result.options,
        access=access,
        requested_revision=annotations.get(prefix + REQUESTED_REVISION),
        warnings=result.warnings,
        **fields,
        **_applied(parse_oci_revision(raw) if raw is not None else None),
    )


@dataclass(frozen=True)
class HelmRepositoryInfo:
    """An OCI HelmRepository, as its HelmCharts need it."""

    namespace: str
    name: str
    claimed: bool
    repository: RepositoryRef | None
    access: Access
    options: OptionsResult
    problems: tuple[str, ...]  # URL problems; option problems are in ``options``


def helm_repository_info(
    obj: Obj, prefix: str, *, min_interval: float, default_interval: float
) -> HelmRepositoryInfo | None:
    """What a HelmChart needs from its HelmRepository; None unless ``spec.type`` is oci."""
    if obj.get("kind") != "HelmRepository" or _get(obj, "spec", "type") != "oci":
        return None
    annotations = _annotations(obj)
    problems: list[str] = []
    repository = _repository(_text(obj, "spec", "url"), "spec.url", problems)
    return HelmRepositoryInfo(
        namespace=_text(obj, "metadata", "namespace") or "",
        name=_text(obj, "metadata", "name") or "",
        claimed=_claimed(annotations, prefix),
        repository=repository,
        access=_access(obj),
        options=parse_options(
            annotations, prefix, min_interval=min_interval, default_interval=default_interval
        ),
        problems=tuple(problems),
    )


def helm_chart_source(chart: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the HelmRepository a HelmChart pulls from, if it uses one."""
    if _get(chart, "spec", "sourceRef", "kind") != "HelmRepository":
        return None
    name = _text(chart, "spec", "sourceRef", "name")
    namespace = _text(chart, "metadata", "namespace")
    return (namespace or "", name) if name else None


def helm_chart_target(
    chart: Obj, repo: HelmRepositoryInfo, prefix: str
) -> Target | SourceProblem | None:
    """The target for a HelmChart of ``repo``; None when it is not ours.

    ``spec.version`` empty or ``*`` means the latest stable version; a concrete version
    is a pin (Flux pulls it without listing tags).
    """
    if (
        chart.get("kind") != "HelmChart"
        or not repo.claimed
        or helm_chart_source(chart) != (repo.namespace, repo.name)
        or opted_out(_annotations(chart), prefix)
    ):
        return None
    target_id = _id(chart, TargetKind.HELM_CHART)
    fields = _status_fields(chart)
    where = f"HelmRepository {repo.namespace}/{repo.name}"
    problems = [f"{where}: {p}" for p in (*repo.problems, *repo.options.problems)]
    chart_name = _text(chart, "spec", "chart")
    if chart_name is None or not _CHART_NAME.fullmatch(chart_name):
        problems.append(f"spec.chart {(chart_name or '')[:80]!r} is not an OCI repository name")
    if problems or repo.repository is None or repo.options.options is None or chart_name is None:
        return SourceProblem(
            target_id, fields["api_version"], "helmcharts", ErrorReason.CONFIG, tuple(problems)
        )
    unsupported = _unsupported(repo.access)
    if unsupported is not None:
        return SourceProblem(
            target_id,
            fields["api_version"],
            "helmcharts",
            ErrorReason.UNSUPPORTED,
            (f"{where}: {unsupported}",),
        )
    version = (_text(chart, "spec", "version") or "*").strip() or "*"
    if version != "*" and is_pinned_chart_version(version):
        rule = WatchRule.pinned(tag=version)
    else:
        rule = WatchRule.semver(TagRule(version, None, Flavor.HELM))
    values_files = _get(chart, "spec", "valuesFiles")
    has_values_files = bool(_text(chart, "spec", "valuesFile")) or (
        isinstance(values_files, list) and len(values_files) > 0
    )
    raw = _text(chart, "status", "artifact", "revision")
    applied = parse_chart_revision(raw, has_values_files=has_values_files) if raw else None
    return Target(
        id=target_id,
        plural="helmcharts",
        repository=RepositoryRef(repo.repository.registry, f"{repo.repository.path}/{chart_name}"),
        rule=rule,
        options=repo.options.options,
        access=repo.access,
        requested_revision=_annotations(chart).get(prefix + REQUESTED_REVISION),
        has_values_files=has_values_files,
        warnings=tuple(f"{where}: {w}" for w in repo.options.warnings),
        **fields,
        **_applied(applied),
    )
