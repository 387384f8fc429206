"""The notify channel's pure parts: references, the Event, scoped nudges, --wait's verdict."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.hooks import Nudge, matching, merged
from exporter.core.notify import (
    CONTROLLER,
    REASON,
    InvalidReference,
    Progress,
    PushedRef,
    event_body,
    notification,
    nudge_for,
    parse_ref,
    progress,
)
from exporter.flux.revision import AppliedRevision
from exporter.flux.targets import TargetId, TargetKind, WatchRule
from exporter.model import Flavor, RepositoryRef, TagRule
from tests.core.test_decision import D1, D2, oci

REPO = RepositoryRef("registry.gitlab.com", "group/project")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("registry.gitlab.com/group/project:1.2.3", PushedRef(REPO, "1.2.3")),
        ("oci://registry.gitlab.com/group/project:v1", PushedRef(REPO, "v1")),
        (f"Registry.GitLab.com/group/project:1.2.3@{D1}", PushedRef(REPO, "1.2.3", D1)),
        ("localhost:5000/a/b:latest", PushedRef(RepositoryRef("localhost:5000", "a/b"),
                                                "latest")),
        ("  127.0.0.1:5000/app:x_1  ", PushedRef(RepositoryRef("127.0.0.1:5000", "app"), "x_1")),
    ],
)  # fmt: skip
def test_references_as_ci_jobs_write_them(text: str, expected: PushedRef) -> None:
    assert parse_ref(text) == expected
    assert parse_ref(str(expected)) == expected  # what the Event carries reads back


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("registry.gitlab.com/group/project", "no tag"),
        ("registry.gitlab.com:5000/group/project", "no tag"),
        ("registry.gitlab.com/group/project:", "is not an OCI tag"),
        ("registry.gitlab.com/group/project:-bad", "is not an OCI tag"),
        ("registry.gitlab.com/Group/project:1", "not an OCI repository name"),
        ("https://registry.gitlab.com/g/p:1", "unsupported URL scheme"),
        ("registry.gitlab.com/g/p:1@sha256:abc", "the digest after '@'"),
        ("user:pw@registry.gitlab.com/g/p:1", "the digest after '@'"),
        ("project:1", "expected oci://HOST"),
    ],
)  # fmt: skip
def test_what_is_not_a_reference_says_why(text: str, says: str) -> None:
    with pytest.raises(InvalidReference, match=says) as info:
        parse_ref(text)
    assert "pw" not in str(info.value)  # credentials in a reference are never repeated


@given(st.text(max_size=80))
def test_any_text_is_a_reference_or_refused_cleanly(text: str) -> None:
    try:
        ref = parse_ref(text)
    except InvalidReference:
        return
    assert parse_ref(str(ref)) == ref


def test_the_event_carries_the_reference_and_reads_back() -> None:
    ref = PushedRef(REPO, "1.2.3", D1)
    body = event_body(ref, "team", "2026-12-07T18:00:00.000000Z", "ci-job-7")
    assert (body["reason"], body["reportingController"], body["note"]) == (
        REASON, CONTROLLER, f"registry.gitlab.com/group/project:1.2.3@{D1}")  # fmt: skip
    assert body["regarding"]["namespace"] == body["metadata"]["namespace"] == "team"
    served: dict[str, Any] = {**body, "metadata": {"name": "n-1", "namespace": "team"}}
    assert notification(served) == ("team", ref)
    assert notification({**served, "reason": "Pulled"}) is None  # not ours
    with pytest.raises(InvalidReference):
        notification({**served, "note": "not a reference"})


def test_a_notification_reaches_its_own_namespace_only() -> None:
    ref = PushedRef(REPO, "1.2.3")
    repos = {TargetId(TargetKind.OCI_REPOSITORY, ns, "app"): REPO for ns in ("team", "other")}
    mine = matching(nudge_for("team", ref), repos)
    assert mine == {REPO: [TargetId(TargetKind.OCI_REPOSITORY, "team", "app")]}
    assert len(matching(nudge_for("platform", ref, everywhere=True), repos)[REPO]) == 2
    assert matching(nudge_for("nobody", ref), repos) == {}


def test_nudges_merged_within_a_gap_keep_every_namespace() -> None:
    a = Nudge("p", "h", namespaces=frozenset({"a"}))
    b = Nudge("p", "h", namespaces=frozenset({"b"}))
    assert merged(a, b).namespaces == frozenset({"a", "b"})
    assert merged(a, Nudge("p", "h")).namespaces is None  # an unscoped one widens it
    assert merged(Nudge("p", "h", expedite=True), b).expedite


def revision(tag: str | None, digest: str | None) -> AppliedRevision:
    return AppliedRevision(tag, digest, None, f"{tag}@{digest}")


def test_a_semver_rule_waits_for_the_pushed_version_or_a_preferred_one() -> None:
    ref = PushedRef(RepositoryRef("ghcr.io", "org/podinfo"), "1.1.0", D2)
    waiting = oci(applied=("1.0.0", D1))
    assert progress(waiting, ref, None) is Progress.WAITING
    assert progress(oci(applied=("1.1.0", D2)), ref, None) is Progress.APPLIED
    assert progress(oci(applied=("1.1.0", D1)), ref, None) is Progress.WAITING  # re-pushed
    assert progress(oci(applied=("1.2.0", D1)), ref, None) is Progress.APPLIED  # preferred
    assert progress(oci(applied=None), ref, None) is Progress.WAITING
    capped = oci(rule=WatchRule.semver(TagRule("<1.1.0")))
    assert progress(capped, ref, None) is Progress.NOT_SELECTED


def test_a_mutable_tag_is_applied_when_its_digest_is() -> None:
    latest = WatchRule.mutable_tag("latest")
    pushed = PushedRef(RepositoryRef("ghcr.io", "org/podinfo"), "latest", D2)
    assert progress(oci(rule=latest, applied=("latest", D1)), pushed, None) is Progress.WAITING
    assert progress(oci(rule=latest, applied=("latest", D2)), pushed, None) is Progress.APPLIED
    undigested = replace(pushed, digest=None)  # then: a new revision since the notification
    before = "latest@" + D1
    same = oci(rule=latest, applied=("latest", D1))
    assert progress(replace(same, applied=revision("latest", D1)), undigested, before) is (
        Progress.WAITING)  # fmt: skip
    assert progress(replace(same, applied=revision("latest", D2)), undigested, before) is (
        Progress.APPLIED)  # fmt: skip
    assert progress(oci(rule=latest), replace(pushed, tag="main"), None) is Progress.NOT_SELECTED


def test_pinned_objects_are_not_selected_unless_pinned_to_it() -> None:
    pinned = oci(rule=WatchRule.pinned(digest=D1), applied=(None, D1))
    ref = PushedRef(RepositoryRef("ghcr.io", "org/podinfo"), "1.1.0", D2)
    assert progress(pinned, ref, None) is Progress.NOT_SELECTED
    assert progress(pinned, replace(ref, digest=D1), None) is Progress.APPLIED


def test_a_helm_chart_version_rule() -> None:
    chart = oci(rule=WatchRule.semver(TagRule("1.x", None, Flavor.HELM)),
                applied=None)  # fmt: skip
    chart = replace(chart, applied=AppliedRevision(None, None, "1.0.0", "1.0.0"))
    ref = PushedRef(RepositoryRef("ghcr.io", "org/podinfo"), "1.1.0")
    assert progress(chart, ref, None) is Progress.WAITING
    assert progress(replace(chart, applied=AppliedRevision(None, None, "1.1.0", "1.1.0")),
                    ref, None) is Progress.APPLIED  # fmt: skip
    assert progress(chart, replace(ref, tag="2.0.0"), None) is Progress.NOT_SELECTED
