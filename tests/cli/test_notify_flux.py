"""``notify`` on a real Flux: instant updates with nothing inbound.

A ServiceAccount in the tenant namespace, bound only to ``manifests/notify/role.yaml``,
runs ``flux-oci-trigger notify`` with its token in a kubeconfig (the same RBAC path as the
GitLab agent's CI access). The exporter polls once an hour and has no events listener, so
only the notification can explain a request within seconds. The same repository opted in
in a second namespace is not requested; a tag the registry does not have is not requested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devenv.cluster import Cluster
from devenv.exporter import exporter_process
from devenv.ocirepo import create_namespace, create_opted_in, wait_for_revision
from devenv.push import Pusher
from devenv.registry import start_registry
from tests.fixtures.flux import SOURCE, annotations_of, is_ready, revision, wait_for
from tests.scrape import sample, wait

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
REQUESTED = "oci-trigger.gitlab.com/requested-revision"
ROOT = Path(__file__).resolve().parents[2]


def ci_kubeconfig(kube: Any, cluster: Cluster, namespace: str, path: Path) -> Path:
    """A ServiceAccount bound to the notify Role only, its token in a two-context kubeconfig."""
    core: Any = client.CoreV1Api(kube)
    rbac: Any = client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "ci-notify"}})
    rbac.create_namespaced_role(namespace, yaml.safe_load((ROOT / "manifests/notify/role.yaml")
                                                          .read_text()))  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "flux-oci-trigger-notify"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "flux-oci-trigger-notify"},
        "subjects": [{"kind": "ServiceAccount", "name": "ci-notify", "namespace": namespace}],
    })  # fmt: skip
    token = core.create_namespaced_service_account_token(
        "ci-notify", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "dev", "cluster": server["cluster"]}],
        "users": [{"name": "ci", "user": {"token": token}}],
        "contexts": [
            {"name": "agents/one:agent", "context": {"cluster": "dev", "user": "ci",
                                                     "namespace": namespace}},
            {"name": "agents/two:agent", "context": {"cluster": "dev", "user": "ci",
                                                     "namespace": namespace}},
        ],
        "current-context": "agents/one:agent",
    }))  # fmt: skip
    return path


def notify(kubeconfig: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the command as a CI job would: (exit code, JSON output, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "notify", "--kubeconfig", str(kubeconfig),
         "--output", "json", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    doc = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, doc, done.stderr


def test_notify_requests_at_once_only_in_its_namespace_and_waits_until_applied(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, tmp_path: Path
) -> None:
    other = f"{namespace}-other"
    create_namespace(kube, other)
    with start_registry(tmp_path / "registry", implementation="v3") as registry, \
            Pusher(registry.base_url) as push:  # fmt: skip
        repo = f"{namespace}/app"
        push.flux_artifact(repo, "v1.0.0")
        url = f"oci://{registry.host}/{repo}"
        for ns in (namespace, other):
            create_opted_in(kube, ns, "app", url, ">=1.0.0")
            wait_for_revision(kube, ns, "app", "v1.0.0@", 120)
        kubeconfig = ci_kubeconfig(kube, flux_cluster, namespace, tmp_path / "ci-kubeconfig")
        flags = ("--interval", "10m", "--tag-ttl", "10m")
        log = flux_cluster.logs / f"flux-oci-trigger-notify-{namespace}.log"
        with exporter_process(flux_cluster.kubeconfig, log, *flags) as exporter:
            base = exporter.url
            ids = {"kind": "OCIRepository", "namespace": namespace, "name": "app"}
            wait(lambda: sample(base, "flux_oci_target_state", {**ids, "state": "up_to_date"})
                 == 1, what="up to date before the push")  # fmt: skip

            pushed = push.flux_artifact(repo, "v1.1.0")
            target = f"v1.1.0@{pushed.digest}"
            code, doc, err = notify(kubeconfig, f"{registry.host}/{repo}:v1.1.0",
                                            "--wait", "2m")  # fmt: skip
            assert code == 0, err
            assert doc["result"] == "ok"
            (applied,) = doc["objects"]
            assert (applied["namespace"], applied["name"], applied["state"]) == (
                namespace, "app", "applied")  # fmt: skip
            assert annotations_of(custom, namespace, "app").get(REQUESTED) == target
            wait_for_revision(kube, namespace, "app", target, 5)
            received = {"source": "kubernetes", "result": "accepted"}
            wait(lambda: (sample(base, "flux_oci_events_received_total", received) or 0) >= 1,
                 timeout=5, what="the notification counted")  # fmt: skip
            # the same repository in another namespace: not this tenant's to nudge
            assert annotations_of(custom, other, "app").get(REQUESTED) is None

            # a tag the registry does not have: the listing decides, nothing is requested
            code, doc, err = notify(kubeconfig, f"oci://{registry.host}/{repo}:v9.9.9",
                                       "--wait", "4s")  # fmt: skip
            assert code == 3, err  # waited for, never applied: the object is named
            assert [o["state"] for o in doc["objects"]] == ["waiting"]
            assert "Ready=True" in doc["objects"][0]["ready"]
            assert annotations_of(custom, namespace, "app").get(REQUESTED) == target

            # every context of the kubeconfig (one per cluster with the GitLab agent)
            code, doc, err = notify(kubeconfig, f"{registry.host}/{repo}:v1.1.0",
                                       "--all-contexts", "--wait", "30s")  # fmt: skip
            assert code == 0, err
            assert sorted(n["context"] for n in doc["notified"]) == [
                "agents/one:agent", "agents/two:agent"]  # fmt: skip

            # a tag its rule excludes: nothing to wait for
            code, doc, err = notify(kubeconfig, f"{registry.host}/{repo}:nightly",
                                       "--wait", "5s")  # fmt: skip
            assert code == 1 and [o["state"] for o in doc["objects"]] == ["not selected"]

            # the Role is for its own namespace only: the refusal names the permission
            code, _, err = notify(kubeconfig, f"{registry.host}/{repo}:v1.1.0", "-n", other)
            assert code == 4
            assert f"forbidden: cannot create events.events.k8s.io in namespace {other}" in err
        text = log.read_text()
    assert "Traceback" not in text


def test_a_helm_chart_of_an_oci_helm_repository_is_covered_the_same_way(
    flux_cluster: Cluster, kube: Any, custom: Any, namespace: str, pusher: Pusher,
    tmp_path: Path,
) -> None:  # fmt: skip
    charts = f"{namespace}/charts"
    pusher.helm_chart(charts, "demo", "0.1.0")
    custom.create_namespaced_custom_object(SOURCE, "v1", namespace, "helmrepositories", {
        "apiVersion": f"{SOURCE}/v1", "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": namespace,
                     "annotations": {"oci-trigger.gitlab.com/enabled": "true"}},
        "spec": {"type": "oci", "url": f"oci://{flux_cluster.registry}/{charts}",
                 "insecure": True, "interval": "1h"},
    })  # fmt: skip
    custom.create_namespaced_custom_object(SOURCE, "v1", namespace, "helmcharts", {
        "apiVersion": f"{SOURCE}/v1", "kind": "HelmChart",
        "metadata": {"name": "demo", "namespace": namespace},
        "spec": {"chart": "demo", "version": ">=0.1.0", "interval": "1h",
                 "sourceRef": {"kind": "HelmRepository", "name": "charts"}},
    })  # fmt: skip

    def chart() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            SOURCE, "v1", namespace, "helmcharts", "demo"
        )
        return obj

    wait_for(chart, lambda o: is_ready(o) and revision(o) == "0.1.0", "chart 0.1.0",
             flux_cluster.logs)  # fmt: skip
    kubeconfig = ci_kubeconfig(kube, flux_cluster, namespace, tmp_path / "ci-kubeconfig")
    log = flux_cluster.logs / f"flux-oci-trigger-notify-helm-{namespace}.log"
    flags = ("--interval", "10m", "--tag-ttl", "10m", "--namespace", namespace)
    with exporter_process(flux_cluster.kubeconfig, log, *flags):
        pusher.helm_chart(charts, "demo", "0.2.0")
        code, doc, err = notify(kubeconfig, f"{flux_cluster.registry}/{charts}/demo:0.2.0",
                                   "--wait", "2m")  # fmt: skip
        assert code == 0, err
        (applied,) = doc["objects"]
        assert (applied["kind"], applied["name"], applied["state"]) == (
            "HelmChart", "demo", "applied")  # fmt: skip
    assert revision(chart()) == "0.2.0"
