"""Webhook payloads -> nudges: what each source's push looks like, and what is ignored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.hooks import HTTP_SOURCES, HookSource, InvalidEvent, Nudge, parse
from tests.fixtures import hooks as fx

GITLAB = "registry.gitlab.com"


def nudges(source: HookSource, doc: Any, event: str = "") -> list[Nudge]:
    return parse(source, json.dumps(doc).encode(), event, GITLAB)


def test_distribution_keeps_tagged_manifest_pushes_only() -> None:
    assert nudges(HookSource.DISTRIBUTION, fx.DISTRIBUTION_PUSH) == [
        Nudge("team/app", "registry.example:5000")
    ]


def test_gitlab_job_and_pipeline_success_name_the_project_subtree() -> None:
    job = nudges(HookSource.GITLAB, fx.GITLAB_JOB, "Job Hook")
    assert job == [Nudge("group/sub/app", GITLAB, subtree=True)]  # registry paths: lower case
    pipeline = nudges(HookSource.GITLAB, fx.GITLAB_PIPELINE, "Pipeline Hook")
    assert pipeline == [Nudge("group/app", GITLAB, subtree=True)]


def test_gitlab_failures_and_other_events_are_ignored() -> None:
    failed = dict(fx.GITLAB_JOB, build_status="failed")
    assert nudges(HookSource.GITLAB, failed, "Job Hook") == []
    running = dict(fx.GITLAB_PIPELINE, object_attributes={"status": "running"})
    assert nudges(HookSource.GITLAB, running, "Pipeline Hook") == []
    assert nudges(HookSource.GITLAB, fx.GITLAB_JOB, "Push Hook") == []
    deleted = dict(fx.GITLAB_TAG_PUSH, after="0" * 40)
    assert nudges(HookSource.GITLAB, deleted, "Tag Push Hook") == []


def test_a_gitlab_tag_push_expedites() -> None:
    assert nudges(HookSource.GITLAB, fx.GITLAB_TAG_PUSH, "Tag Push Hook") == [
        Nudge("group/app", GITLAB, subtree=True, expedite=True)
    ]


def test_github_container_packages_on_ghcr() -> None:
    assert nudges(HookSource.GITHUB, fx.GITHUB_PACKAGE, "package") == [
        Nudge("octo-org/app", "ghcr.io")
    ]
    assert nudges(HookSource.GITHUB, fx.GITHUB_REGISTRY_PACKAGE, "registry_package") == [
        Nudge("octo-org/app", "ghcr.io")
    ]
    npm = json.loads(json.dumps(fx.GITHUB_PACKAGE))
    npm["package"]["package_type"] = "npm"
    assert nudges(HookSource.GITHUB, npm, "package") == []
    assert nudges(HookSource.GITHUB, fx.GITHUB_PACKAGE, "ping") == []


def test_harbor_push_artifact() -> None:
    assert nudges(HookSource.HARBOR, fx.HARBOR_PUSH) == [Nudge("library/app", "harbor.example.com")]
    assert nudges(HookSource.HARBOR, dict(fx.HARBOR_PUSH, type="PULL_ARTIFACT")) == []


@pytest.mark.parametrize(
    ("source", "body", "event"),
    [
        (HookSource.DISTRIBUTION, b"not json", ""),
        (HookSource.DISTRIBUTION, b"[1, 2]", ""),
        (HookSource.DISTRIBUTION, b'{"events": "x"}', ""),
        (HookSource.GITLAB, b'{"build_status": "success"}', "Job Hook"),
        (HookSource.GITHUB, b'{"action": "published", "package": {"package_type": "container"}}',
         "package"),
        (HookSource.HARBOR, b'{"type": "PUSH_ARTIFACT", "event_data": {}}', ""),
        (HookSource.HARBOR, b"\xff\xfe", ""),
    ],
)  # fmt: skip
def test_malformed_bodies_are_invalid(source: HookSource, body: bytes, event: str) -> None:
    with pytest.raises(InvalidEvent):
        parse(source, body, event, GITLAB)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(
    source=st.sampled_from(HTTP_SOURCES),
    doc=JSONISH,
    event=st.sampled_from(["", "Job Hook", "Pipeline Hook", "Tag Push Hook", "package"]),
)
def test_any_json_parses_or_is_invalid_never_crashes(
    source: HookSource, doc: Any, event: str
) -> None:
    try:
        found = parse(source, json.dumps(doc).encode(), event, GITLAB)
    except InvalidEvent:
        return
    assert all(isinstance(n, Nudge) and n.path for n in found)


def test_matching_by_host_path_and_subtree() -> None:
    from exporter.core.hooks import matching
    from exporter.flux.targets import TargetId, TargetKind
    from exporter.model import RepositoryRef

    def tid(name: str) -> TargetId:
        return TargetId(TargetKind.OCI_REPOSITORY, "ns", name)

    repos = {
        tid("app"): RepositoryRef(GITLAB, "group/app"),
        tid("worker"): RepositoryRef(GITLAB, "group/app/worker"),
        tid("sibling"): RepositoryRef(GITLAB, "group/application"),
        tid("mirror"): RepositoryRef("mirror.example", "group/app"),
    }
    subtree = matching(Nudge("group/app", GITLAB, subtree=True), repos)
    assert {t.name for ts in subtree.values() for t in ts} == {"app", "worker"}
    exact = matching(Nudge("group/app", "mirror.example"), repos)
    assert {t.name for ts in exact.values() for t in ts} == {"mirror"}
    # a registry that names itself otherwise than its clients do: matched on the path
    renamed = matching(Nudge("group/app", "10.0.0.7:5000"), repos)
    assert {t.name for ts in renamed.values() for t in ts} == {"app", "mirror"}
    assert matching(Nudge("group/app", "10.0.0.7:5000", subtree=True), repos) == {}
    assert matching(Nudge("other"), repos) == {}


# Keys the parsers read, so that generated documents reach every branch, not only the top.
KEYS = ["events", "action", "target", "repository", "tag", "mediaType", "request", "host",
        "project", "path_with_namespace", "build_status", "object_attributes", "status",
        "after", "package", "registry_package", "package_type", "namespace", "owner", "login",
        "name", "type", "event_data", "repo_full_name", "resources", "resource_url"]  # fmt: skip
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(["push", "success", "published", "container", "PUSH_ARTIFACT", "h/x"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6),
    max_leaves=40,
)  # fmt: skip
DOCUMENTED = {
    HookSource.DISTRIBUTION: (fx.DISTRIBUTION_PUSH, ""),
    HookSource.GITLAB: (fx.GITLAB_JOB, "Job Hook"),
    HookSource.GITHUB: (fx.GITHUB_PACKAGE, "package"),
    HookSource.HARBOR: (fx.HARBOR_PUSH, ""),
}


def _replace(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node ``path`` picks (an index into each level's children) replaced."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[key] = _replace(doc[key], path[1:], value)
    return copy


def _answered(source: HookSource, doc: Any, event: str) -> None:
    try:
        found = parse(source, json.dumps(doc).encode(), event, GITLAB)
    except InvalidEvent:
        return
    assert all(isinstance(n, Nudge) and n.path for n in found)


@given(
    source=st.sampled_from(HTTP_SOURCES),
    doc=SHAPED,
    event=st.sampled_from(["", "Job Hook", "Pipeline Hook", "Tag Push Hook", "package",
                           "registry_package"]),
)  # fmt: skip
def test_documents_with_the_parsers_keys_never_crash(
    source: HookSource, doc: Any, event: str
) -> None:
    _answered(source, doc, event)


@given(
    source=st.sampled_from(HTTP_SOURCES),
    path=st.lists(st.integers(min_value=0, max_value=50), max_size=6),
    value=SHAPED,
)
def test_a_documented_payload_with_any_node_replaced_never_crashes(
    source: HookSource, path: list[int], value: Any
) -> None:
    doc, event = DOCUMENTED[source]
    _answered(source, _replace(doc, path, value), event)


@pytest.mark.parametrize("resources", [5, True, "x", {"resource_url": "h/x"}, [5, None]])
def test_harbor_resources_of_any_shape_are_answered(resources: Any) -> None:
    doc = dict(fx.HARBOR_PUSH)
    doc["event_data"] = dict(doc["event_data"], resources=resources)
    assert nudges(HookSource.HARBOR, doc) == [Nudge("library/app")]
