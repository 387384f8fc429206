from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.flux.annotations import DEFAULT_PREFIX, Options
from exporter.flux.helm_sources import (
    HelmRepositoryInfo,
    helm_chart_source,
    helm_chart_target,
    helm_repository_info,
)
from exporter.flux.revision import AppliedRevision
from exporter.flux.sources import HELM_CHART_LAYER, is_oci_source, oci_repository_target
from exporter.flux.targets import (
    Access,
    RuleKind,
    SourceProblem,
    Target,
    TargetId,
    TargetKind,
    WatchRule,
)
from exporter.model import ErrorReason, Flavor, RepositoryRef, TagRule

P = DEFAULT_PREFIX
DIGEST = "sha256:" + "ab" * 32
LIMITS: dict[str, Any] = {"min_interval": 10.0, "default_interval": 60.0}


def oci_repository(api_version: str = "source.toolkit.fluxcd.io/v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "OCIRepository",
        "metadata": {
            "name": "podinfo",
            "namespace": "apps",
            "generation": 3,
            "annotations": {
                P + "enabled": "true",
                P + "min-age": "2m",
                "reconcile.fluxcd.io/requestedAt": "2026-01-02T03:04:05.123456789Z",
                P + "requested-revision": f"6.7.1@{DIGEST}",
            },
        },
        "spec": {
            "interval": "5m",
            "url": "oci://ghcr.io/stefanprodan/manifests/podinfo",
            "ref": {"semver": ">=6.0.0"},
            **spec,
        },
        "status": {
            "observedGeneration": 3,
            "lastHandledReconcileAt": "2026-01-02T03:04:05.123456789Z",
            "artifact": {
                "revision": f"6.7.0@{DIGEST}",
                "digest": "sha256:" + "cd" * 32,  # the tarball's: never compared
                "lastUpdateTime": "2026-01-02T03:04:09Z",
                "metadata": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
            },
            "conditions": [
                {"type": "Reconciling", "status": "False", "reason": "Succeeded"},
                {"type": "Ready", "status": "True", "reason": "Succeeded"},
            ],
        },
    }


def test_v1_oci_repository() -> None:
    target = oci_repository_target(oci_repository(), P, **LIMITS)
    assert isinstance(target, Target)
    assert target.id == TargetId(TargetKind.OCI_REPOSITORY, "apps", "podinfo")
    assert str(target.id) == "OCIRepository/apps/podinfo"
    assert target.api_version == "source.toolkit.fluxcd.io/v1"
    assert target.plural == "ocirepositories"
    assert target.repository == RepositoryRef("ghcr.io", "stefanprodan/manifests/podinfo")
    assert target.rule == WatchRule.semver(TagRule(">=6.0.0", None, Flavor.OCI))
    assert target.options == Options(interval=60, min_age=120)
    assert target.applied == AppliedRevision("6.7.0", DIGEST, None, f"6.7.0@{DIGEST}")
    assert target.ready is True and target.ready_reason == "Succeeded"
    assert target.requested_at == "2026-01-02T03:04:05.123456789Z"
    assert target.last_handled_reconcile_at == target.requested_at
    assert target.requested_revision == f"6.7.1@{DIGEST}"
    assert target.artifact_updated_at == "2026-01-02T03:04:09Z"
    assert target.access == Access()
    assert not target.suspended


def test_v1beta2_with_access_and_legacy_revision() -> None:
    obj = oci_repository(
        "source.toolkit.fluxcd.io/v1beta2",
        ref={"tag": "stable"},
        secretRef={"name": "regcred"},
        serviceAccountName="puller",
        certSecretRef={"name": "ca"},
        insecure=True,
        provider="generic",
        suspend=True,
    )
    obj["status"]["artifact"]["revision"] = "stable/" + "ab" * 32
    obj["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "Failed"}]
    target = oci_repository_target(obj, P, **LIMITS)
    assert isinstance(target, Target)
    assert target.api_version == "source.toolkit.fluxcd.io/v1beta2"
    assert target.rule == WatchRule.mutable_tag("stable")
    assert target.access == Access("regcred", "puller", "ca", None, True, "generic")
    assert target.applied is not None and target.applied.digest == DIGEST
    assert target.suspended and target.ready is False


@pytest.mark.parametrize(
    ("ref", "rule"),
    [
        (
            {"digest": DIGEST, "semver": "*", "tag": "x"},
            WatchRule(RuleKind.PINNED, digest=DIGEST),
        ),
        (
            {"semver": "~1.2", "semverFilter": "-rc", "tag": "x"},
            WatchRule.semver(TagRule("~1.2", "-rc")),
        ),
        ({"tag": "main"}, WatchRule.mutable_tag("main")),
        ({}, WatchRule.mutable_tag("latest")),
        (None, WatchRule.mutable_tag("latest")),
    ],
)
def test_ref_precedence(ref: dict[str, str] | None, rule: WatchRule) -> None:
    obj = oci_repository()
    obj["spec"]["ref"] = ref
    target = oci_repository_target(obj, P, **LIMITS)
    assert isinstance(target, Target) and target.rule == rule


def test_helm_layer_reads_tags_as_charts() -> None:
    obj = oci_repository(layerSelector={"mediaType": HELM_CHART_LAYER, "operation": "copy"})
    target = oci_repository_target(obj, P, **LIMITS)
    assert isinstance(target, Target)
    assert target.rule.tag_rule == TagRule(">=6.0.0", None, Flavor.OCI_CHART)


def test_not_opted_in_or_opted_out_is_not_ours() -> None:
    obj = oci_repository()
    del obj["metadata"]["annotations"][P + "enabled"]
    assert oci_repository_target(obj, P, **LIMITS) is None
    obj["metadata"]["annotations"][P + "enabled"] = "false"
    assert oci_repository_target(obj, P, **LIMITS) is None
    assert oci_repository_target(oci_repository(), "other.example/", **LIMITS) is None


def test_config_problems_are_collected() -> None:
    obj = oci_repository(url="https://example.com/x", ref={"tag": "not a tag"})
    obj["metadata"]["annotations"][P + "enabled"] = "yes"
    obj["metadata"]["annotations"][P + "min-age"] = "soon"
    problem = oci_repository_target(obj, P, **LIMITS)
    assert isinstance(problem, SourceProblem)
    assert problem.reason is ErrorReason.CONFIG and problem.plural == "ocirepositories"
    assert len(problem.problems) == 4
    assert any(p.startswith("spec.url") for p in problem.problems)
    assert any(p.startswith("spec.ref.tag") for p in problem.problems)


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
def test_cloud_providers_are_watched(provider: str) -> None:
    target = oci_repository_target(oci_repository(provider=provider), P, **LIMITS)
    assert isinstance(target, Target) and target.access.provider == provider


def test_a_provider_flux_does_not_implement_is_unsupported() -> None:
    problem = oci_repository_target(oci_repository(provider="alibaba"), P, **LIMITS)
    assert isinstance(problem, SourceProblem) and problem.reason is ErrorReason.UNSUPPORTED
    assert problem.problems == ("spec.provider 'alibaba': not implemented by Flux",)


def test_unreadable_revision_is_kept_as_a_problem() -> None:
    obj = oci_repository()
    obj["status"]["artifact"]["revision"] = "main@sha1:abc"
    target = oci_repository_target(obj, P, **LIMITS)
    assert isinstance(target, Target)
    assert target.applied is None and target.applied_problem is not None


def test_new_object_without_status() -> None:
    obj = oci_repository()
    del obj["status"]
    target = oci_repository_target(obj, P, **LIMITS)
    assert isinstance(target, Target)
    assert target.applied is None and target.applied_problem is None and target.ready is None


def helm_repository(type_: str | None = "oci", enabled: str | None = "true") -> dict[str, Any]:
    annotations = {P + "tag-pattern": r"^\d"}
    if enabled is not None:
        annotations[P + "enabled"] = enabled
    spec: dict[str, Any] = {
        "url": "oci://registry.gitlab.com/group/charts",
        "secretRef": {"name": "gitlab-deploy-token"},
        "interval": "10m",
    }
    if type_ is not None:
        spec["type"] = type_
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": "flux-system", "annotations": annotations},
        "spec": spec,
        "status": {},  # static object since Flux 2.2
    }


def helm_chart(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": "flux-system-podinfo", "namespace": "flux-system", "generation": 4},
        "spec": {
            "chart": "podinfo",
            "version": "6.x",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            "interval": "5m",
            **spec,
        },
        "status": {
            "artifact": {"revision": "6.5.0", "lastUpdateTime": "2026-01-01T00:00:00Z"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "ChartPullSucceeded"}],
        },
    }


def repo_info(obj: dict[str, Any] | None = None) -> HelmRepositoryInfo:
    info = helm_repository_info(obj or helm_repository(), P, **LIMITS)
    assert info is not None
    return info


def test_oci_helm_repository_info() -> None:
    info = repo_info()
    assert (info.namespace, info.name, info.claimed) == ("flux-system", "charts", True)
    assert info.repository == RepositoryRef("registry.gitlab.com", "group/charts")
    assert info.access.secret == "gitlab-deploy-token"


@pytest.mark.parametrize("type_", [None, "default"])
def test_non_oci_helm_repositories_are_not_ours(type_: str | None) -> None:
    obj = helm_repository(type_)
    assert helm_repository_info(obj, P, **LIMITS) is None
    assert not is_oci_source(obj)


def test_is_oci_source() -> None:
    assert is_oci_source(oci_repository())
    assert is_oci_source(helm_repository(enabled=None))
    assert not is_oci_source(helm_chart())
    assert not is_oci_source({"kind": "GitRepository", "spec": {"type": "oci"}})


def test_helm_chart_target() -> None:
    target = helm_chart_target(helm_chart(), repo_info(), P)
    assert isinstance(target, Target)
    assert target.id == TargetId(TargetKind.HELM_CHART, "flux-system", "flux-system-podinfo")
    assert target.plural == "helmcharts"
    assert target.repository == RepositoryRef("registry.gitlab.com", "group/charts/podinfo")
    assert target.rule == WatchRule.semver(TagRule("6.x", None, Flavor.HELM))
    assert target.options.tag_pattern == r"^\d"
    assert target.access.secret == "gitlab-deploy-token"
    assert target.applied == AppliedRevision(None, None, "6.5.0", "6.5.0")
    assert not target.has_values_files


@pytest.mark.parametrize(
    ("version", "rule"),
    [
        (None, WatchRule.semver(TagRule("*", None, Flavor.HELM))),
        ("", WatchRule.semver(TagRule("*", None, Flavor.HELM))),
        ("*", WatchRule.semver(TagRule("*", None, Flavor.HELM))),
        (">=1.0.0 <2.0.0", WatchRule.semver(TagRule(">=1.0.0 <2.0.0", None, Flavor.HELM))),
        ("6.5.0", WatchRule.pinned(tag="6.5.0")),
        ("v6.5.0", WatchRule.pinned(tag="v6.5.0")),
    ],
)
def test_helm_chart_versions(version: str | None, rule: WatchRule) -> None:
    chart = helm_chart()
    chart["spec"]["version"] = version
    target = helm_chart_target(chart, repo_info(), P)
    assert isinstance(target, Target) and target.rule == rule


def test_values_files_strip_the_generation() -> None:
    chart = helm_chart(valuesFiles=["values.yaml", "values-prod.yaml"])
    chart["status"]["artifact"]["revision"] = "6.5.0+4"
    target = helm_chart_target(chart, repo_info(), P)
    assert isinstance(target, Target) and target.has_values_files
    assert target.applied is not None and target.applied.chart_version == "6.5.0"


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["spec"]["sourceRef"].update(kind="GitRepository"),
        lambda c: c["spec"]["sourceRef"].update(name="other"),
        lambda c: c["metadata"].update(namespace="elsewhere"),
        lambda c: c["metadata"].update(annotations={P + "enabled": "false"}),
    ],
)
def test_charts_that_are_not_ours(change: Any) -> None:
    chart = helm_chart()
    change(chart)
    assert helm_chart_target(chart, repo_info(), P) is None


def test_chart_of_unclaimed_repository_is_not_ours() -> None:
    assert helm_chart_target(helm_chart(), repo_info(helm_repository(enabled=None)), P) is None


def test_chart_reports_repository_problems() -> None:
    repo = helm_repository()
    repo["metadata"]["annotations"][P + "interval"] = "often"
    repo["spec"]["url"] = "oci://registry.gitlab.com"
    problem = helm_chart_target(helm_chart(chart="Bad Name"), repo_info(repo), P)
    assert isinstance(problem, SourceProblem) and problem.reason is ErrorReason.CONFIG
    assert len(problem.problems) == 3
    assert all("HelmRepository flux-system/charts" in p for p in problem.problems[:2])


def test_chart_of_cloud_repository_carries_the_provider() -> None:
    repo = helm_repository()
    repo["spec"]["provider"] = "aws"
    target = helm_chart_target(helm_chart(), repo_info(repo), P)
    assert isinstance(target, Target) and target.access.provider == "aws"


def test_helm_chart_source() -> None:
    assert helm_chart_source(helm_chart()) == ("flux-system", "charts")
    chart = helm_chart()
    chart["spec"]["sourceRef"] = {"kind": "Bucket", "name": "charts"}
    assert helm_chart_source(chart) is None


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.sampled_from(
        [
            ("metadata",),
            ("metadata", "annotations"),
            ("spec",),
            ("spec", "ref"),
            ("spec", "url"),
            ("status",),
            ("status", "artifact"),
            ("status", "conditions"),
        ]
    ),
    json_values,
)
def test_mistyped_fields_never_raise(path: tuple[str, ...], value: object) -> None:
    obj = copy.deepcopy(oci_repository())
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    result = oci_repository_target(obj, P, **LIMITS)
    assert result is None or isinstance(result, Target | SourceProblem)
    chart = copy.deepcopy(helm_chart())
    node = chart
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    result = helm_chart_target(chart, repo_info(), P)
    assert result is None or isinstance(result, Target | SourceProblem)


def test_a_slimmed_object_reads_the_same() -> None:
    """What the informer keeps of an object (status and metadata trimmed) gives the
    same target as the object itself."""
    from exporter.flux.fields import slim

    obj = copy.deepcopy(oci_repository())
    obj["metadata"]["managedFields"] = [{"manager": "kustomize-controller"}]
    obj["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/name": "apps"}
    obj["metadata"]["finalizers"] = ["finalizers.fluxcd.io"]
    obj.setdefault("status", {})["url"] = "http://source-controller/x.tar.gz"
    for condition in obj["status"].get("conditions", []):
        condition["message"] = "stored artifact for digest " + "x" * 500
    slimmed = slim(obj)
    assert "managedFields" not in slimmed["metadata"] and "url" not in slimmed["status"]
    assert "labels" not in slimmed["metadata"] and "finalizers" not in slimmed["metadata"]
    assert oci_repository_target(slimmed, P, **LIMITS) == oci_repository_target(obj, P, **LIMITS)
