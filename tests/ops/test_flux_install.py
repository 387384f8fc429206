"""The Flux-native install, end to end on the real controllers: manifests/ published as an
OCI artifact by scripts/publish-manifests, deploy/flux/ applied, kustomize-controller
creating the exporter's objects; then the exporter, running as the ServiceAccount Flux
created, watches its own OCIRepository and has the next release applied within seconds
(the OCIRepository's interval is 30 min: only the exporter's request explains it).
"""

from __future__ import annotations

import calendar
import copy
import gzip
import io
import json
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devenv.cluster import Cluster
from devenv.exporter import running_exporter
from devenv.publish import FLUX_CONFIG_BLOB
from devenv.push import FLUX_CONFIG, FLUX_CONTENT, OCI_MANIFEST
from tests.fixtures.flux import SOURCE, condition, revision, wait_for
from tests.scrape import sample, wait

pytestmark = [pytest.mark.cluster, pytest.mark.controllers]
ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = "kustomize.toolkit.fluxcd.io"
NS = "flux-system"  # where deploy/flux/ puts the OCIRepository and the Kustomization
NAME = "flux-oci-trigger"
IMAGE = "registry.gitlab.com/flux-oci-trigger/flux-oci-trigger"
SOURCE_URL = "https://gitlab.com/flux-oci-trigger/flux-oci-trigger"


def publish(url: str, tag: str, path: Path) -> str:
    """scripts/publish-manifests ``path`` as ``url:tag``; returns the manifest digest."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "publish-manifests"), f"{url}:{tag}", "--path", str(path),
         "--source", SOURCE_URL, "--revision", f"v{tag}@sha1:{'1' * 40}",
         "--insecure-registry"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    reference = done.stdout.strip()
    assert reference.startswith(f"{url}:{tag}@sha256:"), reference
    return reference.rpartition("@")[2]


def install_objects(cluster: Cluster) -> tuple[dict[str, Any], dict[str, Any]]:
    """deploy/flux/'s OCIRepository and Kustomization, changed only where the dev env
    differs from a real cluster: the registry (loopback, plain HTTP) and ``wait`` (there
    is no kubelet, so the Deployment never rolls out)."""
    files = yaml.safe_load((ROOT / "deploy" / "flux" / "kustomization.yaml").read_text())
    docs = [yaml.safe_load((ROOT / "deploy" / "flux" / f).read_text()) for f in files["resources"]]
    source = copy.deepcopy(next(d for d in docs if d["kind"] == "OCIRepository"))
    sync = copy.deepcopy(next(d for d in docs if d["kind"] == "Kustomization"))
    shipped = source["spec"]["url"]
    assert shipped.startswith("oci://registry.gitlab.com/"), shipped
    source["spec"]["url"] = shipped.replace("registry.gitlab.com", cluster.registry, 1)
    source["spec"]["insecure"] = True
    assert sync["spec"]["wait"] is True  # what a real cluster gets
    sync["spec"]["wait"] = False
    return source, sync


def token_kubeconfig(kube: Any, cluster: Cluster, path: Path) -> Path:
    """A kubeconfig authenticating as the ServiceAccount kustomize-controller created."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    issued: Any = client.CoreV1Api(kube).create_namespaced_service_account_token(
        NAME, NAME, request
    )
    token = issued.status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": NAME, "user": {"token": token}}],
        "contexts": [{"name": NAME, "context": {"cluster": admin["clusters"][0]["name"],
                                                "user": NAME}}],
        "current-context": NAME,
    }))  # fmt: skip
    return path


def applied_by_flux(obj: Any) -> bool:
    labels = obj.metadata.labels or {}
    return (
        labels.get(f"{KUSTOMIZE}/name") == NAME
        and labels.get(f"{KUSTOMIZE}/namespace") == NS
        and labels.get("app.kubernetes.io/part-of") == NAME
    )


def test_published_manifests_are_a_flux_artifact(flux_cluster: Cluster) -> None:
    """What scripts/publish-manifests pushes: flux push artifact's media types and
    annotations, and a tarball of exactly the manifests/ tree."""
    repository = "publish-check/manifests"
    digest = publish(f"oci://{flux_cluster.registry}/{repository}", "0.0.1", ROOT / "manifests")

    def get(path: str, accept: str) -> bytes:
        request = urllib.request.Request(
            f"{flux_cluster.registry_url}/v2/{repository}/{path}", headers={"Accept": accept}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return bytes(resp.read())

    manifest = json.loads(get("manifests/0.0.1", OCI_MANIFEST))
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == FLUX_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [FLUX_CONTENT]
    annotations = manifest["annotations"]
    assert annotations["org.opencontainers.image.source"] == SOURCE_URL
    assert annotations["org.opencontainers.image.revision"] == f"v0.0.1@sha1:{'1' * 40}"
    created = time.strptime(annotations["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(calendar.timegm(created) - time.time()) < 120
    # the config flux push artifact writes (go-containerregistry's empty image, unchanged);
    # tests/devenv/test_publish_parity.py compares it with the library's own push
    assert get(f"blobs/{manifest['config']['digest']}", "*/*") == FLUX_CONFIG_BLOB

    layer = gzip.decompress(get(f"blobs/{manifest['layers'][0]['digest']}", "*/*"))
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name, member in members.items():
            content = tar.extractfile(member) if member.isfile() else None
            if content is not None:
                files[name] = content.read()
    top = ROOT / "manifests"
    tree = {p.relative_to(top).as_posix(): p for p in top.rglob("*")}
    assert {n for n in members if n != "."} == set(tree)
    assert files == {n: p.read_bytes() for n, p in tree.items() if p.is_file()}
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
    assert digest.startswith("sha256:")


def test_flux_installs_the_exporter_which_then_updates_its_own_install(
    flux_cluster: Cluster, kustomize_controller: str, kube: Any, custom: Any, tmp_path: Path
) -> None:
    source, sync = install_objects(flux_cluster)
    url = source["spec"]["url"]

    begin = time.monotonic()
    first = publish(url, "0.1.0", ROOT / "manifests")
    custom.create_namespaced_custom_object(SOURCE, "v1", NS, "ocirepositories", source)
    custom.create_namespaced_custom_object(KUSTOMIZE, "v1", NS, "kustomizations", sync)

    def kustomization() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            KUSTOMIZE, "v1", NS, "kustomizations", NAME
        )
        return obj

    def ready_at(rev: str) -> Any:
        def done(obj: dict[str, Any]) -> bool:
            ready = condition(obj, "Ready") or {}
            return (
                ready.get("status") == "True"
                and ready.get("observedGeneration") == obj["metadata"]["generation"]
                and obj["status"].get("lastAppliedRevision") == rev
            )

        return done

    wait_for(kustomization, ready_at(f"0.1.0@{first}"), "Kustomization applied 0.1.0",
             flux_cluster.logs, timeout=90)  # fmt: skip
    installed = time.monotonic() - begin
    print(f"\npublish -> Kustomization Ready (0.1.0 applied): {installed:.2f}s")

    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    rbac = client.RbacAuthorizationV1Api(kube)
    objects: list[Any] = [
        core.read_namespace(NAME),
        core.read_namespaced_service_account(NAME, NAME),
        rbac.read_cluster_role(NAME),
        rbac.read_cluster_role_binding(NAME),
        rbac.read_namespaced_role(f"{NAME}-leader-election", NAME),
        rbac.read_namespaced_role_binding(f"{NAME}-leader-election", NAME),
        apps.read_namespaced_deployment(NAME, NAME),
        core.read_namespaced_service(NAME, NAME),
    ]
    assert [o.metadata.name for o in objects if not applied_by_flux(o)] == []
    deployment: Any = apps.read_namespaced_deployment(NAME, NAME)
    assert deployment.spec.template.spec.containers[0].image == f"{IMAGE}:0.1.0"
    inventory = {e["id"] for e in kustomization()["status"]["inventory"]["entries"]}
    assert f"{NAME}_{NAME}_apps_Deployment" in inventory
    assert f"_{NAME}__Namespace" in inventory

    # the next release: the same manifests, the image tag bumped
    release = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", release)
    base = release / "base" / "kustomization.yaml"
    base.write_text(base.read_text().replace("newTag: 0.1.0", "newTag: 0.1.1"))
    assert "newTag: 0.1.1" in base.read_text()

    kubeconfig = token_kubeconfig(kube, flux_cluster, tmp_path / "exporter.kubeconfig")
    log = flux_cluster.logs / "flux-oci-trigger-install.log"
    args = ("--namespace", NS, "--tag-ttl", "2s", "--interval", "2s")
    with running_exporter(kubeconfig, log, *args, min_interval="1s") as exporter:
        ids = {"kind": "OCIRepository", "namespace": NS, "name": NAME}
        wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"})
             == 1, timeout=30, what="the exporter to see its own install up to date")  # fmt: skip

        def read_source() -> dict[str, Any]:
            obj: dict[str, Any] = custom.get_namespaced_custom_object(
                SOURCE, "v1", NS, "ocirepositories", NAME
            )
            return obj

        pushed = time.monotonic()
        second = publish(url, "0.1.1", release)
        new = f"0.1.1@{second}"
        obj = wait_for(
            read_source,
            lambda o: (o["metadata"].get("annotations") or {}).get(
                "oci-trigger.gitlab.com/requested-revision") == new,
            "the exporter's request", flux_cluster.logs, timeout=30,
        )  # fmt: skip
        requested = time.monotonic() - pushed
        token = obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
        obj = wait_for(read_source, lambda o: revision(o) == new, "source-controller on 0.1.1",
                       flux_cluster.logs, timeout=30)  # fmt: skip
        fetched = time.monotonic() - pushed
        assert obj["status"]["lastHandledReconcileAt"] == token
        wait_for(kustomization, ready_at(new), "Kustomization applied 0.1.1",
                 flux_cluster.logs, timeout=30)  # fmt: skip
        applied = time.monotonic() - pushed
        print(f"push 0.1.1 -> requested {requested:.2f}s, source artifact {fetched:.2f}s, "
              f"applied by kustomize-controller {applied:.2f}s")  # fmt: skip

        deployment = apps.read_namespaced_deployment(NAME, NAME)
        assert deployment.spec.template.spec.containers[0].image == f"{IMAGE}:0.1.1"
        assert applied_by_flux(deployment)
        managers = {f["manager"] for f in obj["metadata"]["managedFields"]}
        assert "flux-oci-trigger" in managers
        wait(lambda: sample(exporter, "flux_oci_reconcile_requests_total", ids) == 1,
             timeout=5, what="one request counted")  # fmt: skip
        wait(lambda: sample(exporter, "flux_oci_target_state", {**ids, "state": "up_to_date"})
             == 1, timeout=30, what="up to date on 0.1.1")  # fmt: skip
