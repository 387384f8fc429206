"""The exporter against a real kube-apiserver + etcd (Flux CRDs) and a real registry.

No Flux controller runs here: these tests write ``status.artifact.revision`` themselves
through the status subresource, exactly where source-controller writes it, so that each
case starts from the applied revision it needs. They check everything the exporter does on
the real API server: the merge patch, the bookkeeping annotation, Events, idempotence
across restarts, dry-run, and per-object error isolation. The tests marked ``controllers``
repeat the main paths with the real source-controller and helm-controller.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devenv.kubeapi import ControlPlane
from devenv.push import Pushed, Pusher
from devenv.registry import RunningRegistry
from tests.fixtures.objects import namespace, oci_repository

pytestmark = pytest.mark.cluster

GROUP, VERSION = "source.toolkit.fluxcd.io", "v1"
PREFIX = "oci-trigger.gitlab.com/"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    yield api
    api.close()


@pytest.fixture(scope="module")
def pushed(registry: RunningRegistry) -> dict[str, Pushed]:
    with Pusher(registry.base_url) as push:
        return {
            tag: push.flux_artifact("apps/web", tag, created=1_700_000_000 + i)
            for i, tag in enumerate(["v1.0.0", "v1.1.0", "v2.0.0-rc.1", "latest"])
        }


def get(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, "ocirepositories", name
    )
    assert isinstance(obj, dict)
    return obj


def annotations_of(api: client.ApiClient, ns: str, name: str) -> dict[str, str]:
    return dict(get(api, ns, name)["metadata"].get("annotations") or {})


def events(api: client.ApiClient, ns: str, name: str) -> list[tuple[str, str]]:
    found = client.CoreV1Api(api).list_namespaced_event(ns).items
    return [(e.reason or "", e.message or "") for e in found if e.involved_object.name == name]


def exporter(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_behind_object_gets_one_request_and_an_event(
    api: client.ApiClient,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    pushed: dict[str, Pushed],
) -> None:
    ns = namespace(api, "team-a")
    url = f"oci://{registry.host}/apps/web"
    old = f"v1.0.0@{pushed['v1.0.0'].digest}"
    target = f"v1.1.0@{pushed['v1.1.0'].digest}"
    oci_repository(
        api, ns, "web", url, {"semver": ">=1.0.0"}, {PREFIX + "enabled": "true"}, applied=old
    )
    oci_repository(
        api,
        ns,
        "web-current",
        url,
        {"semver": "~1.1"},
        {PREFIX + "enabled": "true"},
        applied=target,
    )
    oci_repository(api, ns, "web-off", url, {"semver": ">=1.0.0"}, {}, applied=old)
    oci_repository(
        api,
        ns,
        "web-broken",
        url,
        {"semver": ">=1.0.0"},
        {PREFIX + "enabled": "true", PREFIX + "min-age": "soon", PREFIX + "tag-patern": "x"},
        applied=old,
    )
    oci_repository(
        api,
        ns,
        "web-suspended",
        url,
        {"semver": ">=1.0.0"},
        {PREFIX + "enabled": "true"},
        applied=old,
        suspend=True,
    )
    oci_repository(
        api,
        ns,
        "web-pinned",
        url,
        {"digest": pushed["v1.0.0"].digest},
        {PREFIX + "enabled": "true"},
        applied=pushed["v1.0.0"].digest,
    )

    first = exporter(control_plane.kubeconfig, "run", "--once", "--namespace", ns)
    assert first.returncode == 0, first.stderr
    got = annotations_of(api, ns, "web")
    assert got[PREFIX + "requested-revision"] == target
    token = got["reconcile.fluxcd.io/requestedAt"]
    assert token.endswith("Z") and "T" in token
    assert [r for r, _ in events(api, ns, "web")] == ["ReconcileRequested"]
    assert target in events(api, ns, "web")[0][1]
    for untouched in ("web-current", "web-off", "web-suspended", "web-pinned", "web-broken"):
        assert "reconcile.fluxcd.io/requestedAt" not in annotations_of(api, ns, untouched), (
            untouched
        )
    broken = events(api, ns, "web-broken")
    assert [r for r, _ in broken] == ["InvalidConfiguration"]
    assert "min-age" in broken[0][1] and "tag-patern" in broken[0][1]  # every problem at once
    # kubectl describe and flux events find an object's Events by its uid
    for name, reasons in (
        ("web", ["ReconcileRequested"]),
        ("web-broken", ["InvalidConfiguration"]),
    ):
        uid = get(api, ns, name)["metadata"]["uid"]
        described = client.CoreV1Api(api).list_namespaced_event(
            ns, field_selector=f"involvedObject.uid={uid}"
        )
        assert [e.reason for e in described.items] == reasons, name

    # A restart (a new process, no memory) must not request the same revision again.
    second = exporter(control_plane.kubeconfig, "run", "--once", "--namespace", ns)
    assert second.returncode == 0, second.stderr
    assert annotations_of(api, ns, "web")["reconcile.fluxcd.io/requestedAt"] == token
    assert [r for r, _ in events(api, ns, "web")] == ["ReconcileRequested"]

    report = exporter(control_plane.kubeconfig, "check", "--namespace", ns, "--output", "json")
    assert report.returncode == 0, report.stderr
    # a restart reports a bad object once more; check (a dry run) writes no Event of its own
    assert [r for r, _ in events(api, ns, "web-broken")] == ["InvalidConfiguration"] * 2
    states = {row["name"]: row["state"] for row in json.loads(report.stdout)}
    assert states == {
        "web": "pending",
        "web-current": "up_to_date",
        "web-broken": "config_error",
        "web-suspended": "suspended",
        "web-pinned": "pinned",
    }
    broken_row = next(r for r in json.loads(report.stdout) if r["name"] == "web-broken")
    assert broken_row["reason"] == "config" and "tag-patern" in broken_row["message"]

    # check as a CI gate: its own exit code when a target is in a failing state
    gate = exporter(control_plane.kubeconfig, "check", "--namespace", ns,
                    "--fail-on", "config_error,error,no_match")  # fmt: skip
    assert gate.returncode == 3, gate.stderr
    assert "targets in a --fail-on state: config_error 1" in gate.stderr
    assert "config: " in gate.stdout and "tag-patern" in gate.stdout  # the table says why
    passing = exporter(control_plane.kubeconfig, "check", "--namespace", ns,
                       "--fail-on", "error,no_match")  # fmt: skip
    assert passing.returncode == 0, passing.stderr


def test_dry_run_patches_nothing(
    api: client.ApiClient,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    pushed: dict[str, Pushed],
) -> None:
    ns = namespace(api, "team-b")
    oci_repository(
        api,
        ns,
        "web",
        f"oci://{registry.host}/apps/web",
        {"semver": ">=1.0.0"},
        {PREFIX + "enabled": "true"},
        applied=f"v1.0.0@{pushed['v1.0.0'].digest}",
    )
    oci_repository(
        api, ns, "bad", f"oci://{registry.host}/apps/web", {"semver": ">=1.0.0"},
        {PREFIX + "enabled": "true", PREFIX + "min-age": "soon"},
    )  # fmt: skip
    done = exporter(
        control_plane.kubeconfig, "run", "--once", "--dry-run", "--namespace", ns,
        "--log-format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    would = [e for e in lines if "would request" in e["msg"]]
    assert [(e["kind"], e["namespace"], e["name"]) for e in would] == [("OCIRepository", ns, "web")]
    assert would[0]["revision"].startswith("v1.1.0@sha256:")
    assert events(api, ns, "bad") == []  # a dry run writes nothing, Events included
    assert "reconcile.fluxcd.io/requestedAt" not in annotations_of(api, ns, "web")
    assert events(api, ns, "web") == []


def test_moved_mutable_tag_is_requested(
    api: client.ApiClient,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    pushed: dict[str, Pushed],
) -> None:
    ns = namespace(api, "team-c")
    oci_repository(
        api,
        ns,
        "web",
        f"oci://{registry.host}/apps/web",
        {"tag": "latest"},
        {PREFIX + "enabled": "true"},
        applied=f"latest@{pushed['latest'].digest}",
    )
    same = exporter(control_plane.kubeconfig, "run", "--once", "--namespace", ns)
    assert same.returncode == 0, same.stderr
    assert "reconcile.fluxcd.io/requestedAt" not in annotations_of(api, ns, "web")
    with Pusher(registry.base_url) as push:
        moved = push.flux_artifact("apps/web", "latest", created=time.time())
    assert moved.digest != pushed["latest"].digest
    again = exporter(control_plane.kubeconfig, "run", "--once", "--namespace", ns)
    assert again.returncode == 0, again.stderr
    assert annotations_of(api, ns, "web")[PREFIX + "requested-revision"] == f"latest@{moved.digest}"
