"""Raw OCIRepository objects -> what to watch and what Flux applied.

Every Flux field path the exporter reads is in this module, ``exporter.flux.helm_sources``
(HelmRepository, HelmChart) or ``exporter.flux.fields`` (what all kinds share), so a
Flux API change is a diff there. Input is the object as the API server returns it
(``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``); v1 and v1beta2
OCIRepository share the fields read here. Nothing is trusted to be well-formed: missing
or mistyped fields read as absent.

An object is ours when ``<prefix>enabled`` is present and not ``"false"``; an invalid
value there is reported (a typo must not silently opt out).
"""

from __future__ import annotations

from exporter.flux.annotations import (
    REQUESTED_REVISION,
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
from exporter.flux.policy import TagParsing, flavor_for
from exporter.flux.revision import (
    is_digest,
    is_tag,
    parse_oci_revision,
)
from exporter.flux.targets import SourceProblem, Target, TargetKind, WatchRule
from exporter.model import ErrorReason, Flavor, TagRule

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def is_oci_source(obj: Obj) -> bool:
    """Whether an object is a Flux OCI source at all (for usage counts, opted in or not)."""
    kind = obj.get("kind")
    return kind == "OCIRepository" or (
        kind == "HelmRepository" and get(obj, "spec", "type") == "oci"
    )


def _oci_rule(obj: Obj, problems: list[str], tag_parsing: TagParsing) -> WatchRule:
    """``spec.ref`` with Flux's precedence: digest > semver > tag > ``latest``."""
    digest = text(obj, "spec", "ref", "digest")
    semver = text(obj, "spec", "ref", "semver")
    tag = text(obj, "spec", "ref", "tag")
    if digest is not None:
        if not is_digest(digest):
            problems.append(f"spec.ref.digest {digest[:80]!r} is not a sha256/sha512 digest")
        return WatchRule.pinned(digest=digest)
    if semver is not None:
        helm_layer = get(obj, "spec", "layerSelector", "mediaType") == HELM_CHART_LAYER
        flavor = flavor_for(Flavor.OCI_CHART if helm_layer else Flavor.OCI, tag_parsing)
        return WatchRule.semver(TagRule(semver, text(obj, "spec", "ref", "semverFilter"), flavor))
    tag = tag or "latest"
    if not is_tag(tag):
        problems.append(f"spec.ref.tag {tag[:80]!r} is not a valid OCI tag")
    return WatchRule.mutable_tag(tag)


def oci_repository_target(
    obj: Obj,
    prefix: str,
    *,
    min_interval: float,
    default_interval: float,
    tag_parsing: TagParsing = TagParsing.FLUX_2_7,
) -> Target | SourceProblem | None:
    """The target for an OCIRepository, a problem, or None when it has not opted in."""
    annotations = annotations_of(obj)
    if obj.get("kind") != "OCIRepository" or not claimed(annotations, prefix):
        return None
    target_id = object_id(obj, TargetKind.OCI_REPOSITORY)
    result = parse_options(
        annotations, prefix, min_interval=min_interval, default_interval=default_interval
    )
    problems = list(result.problems)
    repository = repository_ref(text(obj, "spec", "url"), "spec.url", problems)
    rule = _oci_rule(obj, problems, tag_parsing)
    access = access_of(obj)
    fields = status_fields(obj)
    if problems or repository is None or result.options is None:
        return SourceProblem(
            target_id,
            fields["api_version"],
            "ocirepositories",
            ErrorReason.CONFIG,
            tuple(problems),
            uid=fields["uid"],
            resource_version=fields["resource_version"],
            event_annotations=fields["event_annotations"],
        )
    unsupported = unsupported_reason(access)
    if unsupported is not None:
        return SourceProblem(
            target_id,
            fields["api_version"],
            "ocirepositories",
            ErrorReason.UNSUPPORTED,
            (unsupported,),
            uid=fields["uid"],
            resource_version=fields["resource_version"],
            event_annotations=fields["event_annotations"],
        )
    raw = text(obj, "status", "artifact", "revision")
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
        **applied_fields(parse_oci_revision(raw) if raw is not None else None),
    )
