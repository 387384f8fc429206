"""Flux's event payload, field for field as fluxcd/pkg's recorder (runtime v0.110.1) writes
it and notification-controller (v1.9.2) reads it."""

from __future__ import annotations

import json
from typing import Any

from exporter.flux.events import (
    MAX_MESSAGE,
    event_metadata,
    flux_event,
    forwarded_annotations,
)
from exporter.flux.sources import oci_repository_target
from exporter.flux.targets import SourceProblem

REVISION = "v1.1.0@sha256:" + "a" * 64
PREFIX = "oci-trigger.gitlab.com/"


def event(**changes: Any) -> dict[str, Any]:
    given: dict[str, Any] = {
        "kind": "OCIRepository",
        "api_version": "source.toolkit.fluxcd.io/v1",
        "namespace": "apps",
        "name": "web",
        "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "resource_version": "4711",
        "warning": False,
        "reason": "ReconcileRequested",
        "message": "new artifact v1.1.0 (applied: v1.0.0); reconciliation requested",
        "metadata": {"source.toolkit.fluxcd.io/revision": REVISION},
        "timestamp": 1_786_000_000.75,
        "controller": "flux-oci-trigger",
        "instance": "flux-oci-trigger-7d9f8-abcde",
    }
    return flux_event(**{**given, **changes})


def test_an_event_has_fluxs_fields_in_fluxs_order() -> None:
    body = event()
    assert body == {
        "involvedObject": {
            "kind": "OCIRepository",
            "namespace": "apps",
            "name": "web",
            "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "resourceVersion": "4711",
        },
        "severity": "info",
        "timestamp": "2026-08-06T07:06:40Z",  # metav1.Time: RFC 3339, whole seconds, UTC
        "message": "new artifact v1.1.0 (applied: v1.0.0); reconciliation requested",
        "reason": "ReconcileRequested",
        "metadata": {"source.toolkit.fluxcd.io/revision": REVISION},
        "reportingController": "flux-oci-trigger",
        "reportingInstance": "flux-oci-trigger-7d9f8-abcde",
    }
    assert list(body) == [
        "involvedObject", "severity", "timestamp", "message", "reason", "metadata",
        "reportingController", "reportingInstance",
    ]  # fmt: skip
    json.dumps(body)  # plain JSON


def test_a_warning_is_an_error_and_empty_fields_are_left_out_as_go_omits_them() -> None:
    body = event(warning=True, uid=None, resource_version=None, metadata={}, instance="")
    assert body["severity"] == "error"
    assert "metadata" not in body and "reportingInstance" not in body
    assert set(body["involvedObject"]) == {"kind", "namespace", "name", "apiVersion"}


def test_a_message_is_cut_to_the_apis_limit() -> None:
    assert len(event(message="x" * 50_000)["message"]) == MAX_MESSAGE == 39_000


def test_the_revision_goes_under_the_objects_group_as_fluxs_controllers_write_it() -> None:
    forwarded = (("event.toolkit.fluxcd.io/cluster", "prod"),)
    assert event_metadata("source.toolkit.fluxcd.io/v1", REVISION, forwarded) == {
        "event.toolkit.fluxcd.io/cluster": "prod",
        "source.toolkit.fluxcd.io/revision": REVISION,
    }
    assert event_metadata("source.toolkit.fluxcd.io/v1beta2", "0.2.0") == {
        "source.toolkit.fluxcd.io/revision": "0.2.0"
    }
    assert event_metadata("source.toolkit.fluxcd.io/v1", "") == {}  # no revision: no key


def test_only_the_objects_event_annotations_are_forwarded() -> None:
    annotations = {
        "event.toolkit.fluxcd.io/team": "payments",
        "event.toolkit.fluxcd.io/cluster": "prod",
        "oci-trigger.gitlab.com/enabled": "true",
        "reconcile.fluxcd.io/requestedAt": "2026-08-06T05:46:40Z",
        "event.toolkit.fluxcd.io.evil/x": "no",
    }
    assert forwarded_annotations(annotations) == (
        ("event.toolkit.fluxcd.io/cluster", "prod"),
        ("event.toolkit.fluxcd.io/team", "payments"),
    )


def test_a_target_and_a_problem_carry_their_objects_event_annotations() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "annotations": {
                PREFIX + "enabled": "true",
                "event.toolkit.fluxcd.io/cluster": "prod",
            },
        },
        "spec": {"url": "oci://registry.example/apps/web", "ref": {"semver": ">=1.0.0"}},
    }
    target = oci_repository_target(obj, PREFIX, min_interval=10, default_interval=60)
    assert target is not None and not isinstance(target, SourceProblem)
    assert target.event_annotations == (("event.toolkit.fluxcd.io/cluster", "prod"),)
    obj["spec"] = {"ref": {"semver": ">=1.0.0"}}  # no url: a problem, its Events on the object
    problem = oci_repository_target(obj, PREFIX, min_interval=10, default_interval=60)
    assert isinstance(problem, SourceProblem)
    assert problem.event_annotations == (("event.toolkit.fluxcd.io/cluster", "prod"),)
