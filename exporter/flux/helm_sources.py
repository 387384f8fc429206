"""Raw HelmRepository and HelmChart objects -> what to watch and what Flux applied.

For HelmCharts the opt-in and the options come from the OCI HelmRepository (a static
object since Flux 2.2 that cannot itself be reconciled); a HelmChart can still opt out
with ``enabled: "false"``. The reconcile request goes to the HelmChart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.flux.annotations import (
    REQUESTED_REVISION,
    OptionsResult,
    opted_out,
    parse_options,
)
from exporter.flux.fields import (
    Obj,
    access_of,
    annotations_of,
    applied_fields,
    claimed,
    get,
    object_id,
    repository_ref,
    status_fields,
    text,
    unsupported_reason,
)
from exporter.flux.policy import TagParsing, is_pinned_chart_version
from exporter.flux.revision import (
    parse_chart_revision,
)
from exporter.flux.targets import Access, SourceProblem, Target, TargetKind, WatchRule
from exporter.model import ErrorReason, Flavor, RepositoryRef, TagRule

_CHART_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


@dataclass(frozen=True, slots=True)
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
    if obj.get("kind") != "HelmRepository" or get(obj, "spec", "type") != "oci":
        return None
    annotations = annotations_of(obj)
    problems: list[str] = []
    repository = repository_ref(text(obj, "spec", "url"), "spec.url", problems)
    return HelmRepositoryInfo(
        namespace=text(obj, "metadata", "namespace") or "",
        name=text(obj, "metadata", "name") or "",
        claimed=claimed(annotations, prefix),
        repository=repository,
        access=access_of(obj),
        options=parse_options(
            annotations, prefix, min_interval=min_interval, default_interval=default_interval
        ),
        problems=tuple(problems),
    )


def helm_chart_source(chart: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the HelmRepository a HelmChart pulls from, if it uses one."""
    if get(chart, "spec", "sourceRef", "kind") != "HelmRepository":
        return None
    name = text(chart, "spec", "sourceRef", "name")
    namespace = text(chart, "metadata", "namespace")
    return (namespace or "", name) if name else None


def helm_chart_target(
    chart: Obj,
    repo: HelmRepositoryInfo,
    prefix: str,
    tag_parsing: TagParsing = TagParsing.FLUX_2_7,
) -> Target | SourceProblem | None:
    """The target for a HelmChart of ``repo``; None when it is not ours.

    ``spec.version`` empty or ``*`` means the latest stable version; a concrete version
    is a pin (Flux pulls it without listing tags).
    """
    if (
        chart.get("kind") != "HelmChart"
        or not repo.claimed
        or helm_chart_source(chart) != (repo.namespace, repo.name)
        or opted_out(annotations_of(chart), prefix)
    ):
        return None
    target_id = object_id(chart, TargetKind.HELM_CHART)
    fields = status_fields(chart)
    where = f"HelmRepository {repo.namespace}/{repo.name}"
    problems = [f"{where}: {p}" for p in (*repo.problems, *repo.options.problems)]
    chart_name = text(chart, "spec", "chart")
    if chart_name is None or not _CHART_NAME.fullmatch(chart_name):
        problems.append(f"spec.chart {(chart_name or '')[:80]!r} is not an OCI repository name")
    if problems or repo.repository is None or repo.options.options is None or chart_name is None:
        return SourceProblem(
            target_id,
            fields["api_version"],
            "helmcharts",
            ErrorReason.CONFIG,
            tuple(problems),
            uid=fields["uid"],
            resource_version=fields["resource_version"],
            event_annotations=fields["event_annotations"],
        )
    unsupported = unsupported_reason(repo.access)
    if unsupported is not None:
        return SourceProblem(
            target_id,
            fields["api_version"],
            "helmcharts",
            ErrorReason.UNSUPPORTED,
            (f"{where}: {unsupported}",),
            uid=fields["uid"],
            resource_version=fields["resource_version"],
            event_annotations=fields["event_annotations"],
        )
    version = (text(chart, "spec", "version") or "*").strip() or "*"
    if version != "*" and is_pinned_chart_version(version, tag_parsing):
        rule = WatchRule.pinned(tag=version)
    else:
        rule = WatchRule.semver(TagRule(version, None, Flavor.HELM))
    values_files = get(chart, "spec", "valuesFiles")
    has_values_files = bool(text(chart, "spec", "valuesFile")) or (
        isinstance(values_files, list) and len(values_files) > 0
    )
    raw = text(chart, "status", "artifact", "revision")
    applied = parse_chart_revision(raw, has_values_files=has_values_files) if raw else None
    return Target(
        id=target_id,
        plural="helmcharts",
        repository=RepositoryRef(repo.repository.registry, f"{repo.repository.path}/{chart_name}"),
        rule=rule,
        options=repo.options.options,
        access=repo.access,
        requested_revision=annotations_of(chart).get(prefix + REQUESTED_REVISION),
        has_values_files=has_values_files,
        warnings=tuple(f"{where}: {w}" for w in repo.options.warnings),
        **fields,
        **applied_fields(applied),
    )
