"""The manifests against a real API server: server-side apply, dry run.

On the session's control plane (``control_plane``: etcd and kube-apiserver with Flux's
CRDs, no controller). The ServiceMonitor and PrometheusRule CRDs come from the
prometheus-operator Go module (``go mod download``) and are installed for real, as are the
Namespace and the ServiceAccount: a dry run creates nothing, and namespaced objects (and
the Pod check's service account) need them to exist. Everything else is validated (strict
field validation, admission, RBAC escalation checks); the last test then binds the
ClusterRole for real and runs the exporter with the ServiceAccount's own token.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.kubeapi import ControlPlane
from devenv.ports import free_port
from tests.ops.conftest import ROOT, kustomize, require_tool

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.80.1"
CRDS = ("servicemonitors", "prometheusrules")

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def kubeconfig(control_plane: ControlPlane) -> str:
    return str(control_plane.kubeconfig)


def _run(args: list[str], stdin: str = "", cwd: Path | None = None) -> tuple[int, str]:
    out = subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=180)
    return out.returncode, out.stdout + out.stderr


def _documents(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.fixture(scope="module")
def prepared(kubeconfig: str, kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Monitoring CRDs, Namespace and ServiceAccount in place; returns the kubeconfig."""
    go = require_tool("go", "/usr/local/go/bin/go")
    code, out = _run(
        [go, "mod", "download", "-json", f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"],
        cwd=tmp_path_factory.mktemp("gomod"),
    )
    assert code == 0, out
    crd_dir = Path(json.loads(out)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [crd_dir / f"monitoring.coreos.com_{plural}.yaml" for plural in CRDS]
    k = [kubectl, "--kubeconfig", kubeconfig]
    code, out = _run([*k, "apply", "--server-side", *(f"--filename={f}" for f in files)])
    assert code == 0, out
    established = [f"crd/{plural}.monitoring.coreos.com" for plural in CRDS]
    code, out = _run([*k, "wait", "--for=condition=Established", "--timeout=60s", *established])
    assert code == 0, out
    objects = kustomize(kubectl, ROOT / "manifests")
    needed = [o for o in objects if o["kind"] in ("Namespace", "ServiceAccount")]
    code, out = _run([*k, "apply", "--server-side", "-f", "-"], _documents(needed))
    assert code == 0, out
    return kubeconfig


def _dry_run(kubectl: str, kubeconfig: str, objects: list[dict[str, Any]]) -> tuple[int, str]:
    return _run(
        [
            kubectl,
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=flux-oci-trigger-tests",
            "-f",
            "-",
        ],
        _documents(objects),
    )


def test_every_object_applies(prepared: str, kubectl: str) -> None:
    objects = kustomize(kubectl, ROOT / "manifests")
    code, out = _dry_run(kubectl, prepared, objects)
    assert code == 0, out
    for o in objects:
        assert f"{o['kind'].lower()}" in out.lower() and o["metadata"]["name"] in out, o["kind"]
    assert out.count("(server dry run)") == len(objects), out


def test_a_misspelt_field_is_refused(prepared: str, kubectl: str) -> None:
    """The dry run validates strictly, so the test above can fail."""
    objects = kustomize(kubectl, ROOT / "manifests")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = (
        True
    )
    code, out = _dry_run(kubectl, prepared, [deployment])
    assert code != 0
    assert "runAsNonroot" in out


def test_pod_is_admitted_under_restricted_pod_security(prepared: str, kubectl: str) -> None:
    """The Deployment's pod template, as a Pod, passes the namespace's `restricted` policy."""
    objects = kustomize(kubectl, ROOT / "manifests")
    template = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    metadata = {**template["metadata"], "name": "check", "namespace": "flux-oci-trigger"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
    code, out = _dry_run(kubectl, prepared, [pod])
    assert code == 0, out
    loose = copy.deepcopy(pod)
    del loose["spec"]["containers"][0]["securityContext"]["capabilities"]
    code, out = _dry_run(kubectl, prepared, [loose])
    assert code != 0 and "restricted" in out, out


# -- the ClusterRole for real: enough for the exporter, and nothing more -------------------

NS = "rbac-live"
SA = "system:serviceaccount:flux-oci-trigger:flux-oci-trigger"


def _token_kubeconfig(
    kubectl: str, admin_kubeconfig: str, path: Path, account: str = "flux-oci-trigger"
) -> str:
    """A kubeconfig that authenticates as a ServiceAccount of namespace flux-oci-trigger
    (the exporter's own by default), through the TokenRequest API."""
    k = [kubectl, "--kubeconfig", admin_kubeconfig]
    code, token = _run([*k, "-n", "flux-oci-trigger", "create", "token", account,
                        "--duration=10m"])  # fmt: skip
    assert code == 0, token
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "exporter", "user": {"token": token.strip()}}],
        "contexts": [{"name": "exporter", "context": {
            "cluster": admin["clusters"][0]["name"], "user": "exporter"}}],
        "current-context": "exporter",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _objects_behind(api: Any, registry: Any, ns: str) -> str:
    """In namespace ``ns`` (existing): an opted-in OCIRepository behind by one version,
    reading a pull secret and a service account's imagePullSecrets; returns the newer
    revision."""
    from kubernetes import client

    from devenv.push import Pusher
    from tests.fixtures.objects import oci_repository

    with Pusher(registry.base_url) as push:
        v1 = push.flux_artifact(f"{ns}/app", "v1.0.0").digest
        v2 = push.flux_artifact(f"{ns}/app", "v1.1.0").digest
    core = client.CoreV1Api(api)
    auths = {"auths": {registry.host: {"username": "puller", "password": "not-checked"}}}
    core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="pull"), type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": json.dumps(auths)}))  # fmt: skip
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="puller"),
        image_pull_secrets=[client.V1LocalObjectReference(name="pull")]))  # fmt: skip
    oci_repository(api, ns, "app", f"oci://{registry.host}/{ns}/app", {"semver": ">=1.0.0"},
                   {"oci-trigger.gitlab.com/enabled": "true"}, applied=f"v1.0.0@{v1}")  # fmt: skip
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "source.toolkit.fluxcd.io", "v1", ns, "ocirepositories", "app",
        {"spec": {"secretRef": {"name": "pull"}, "serviceAccountName": "puller"}},
    )  # fmt: skip
    return f"v1.1.0@{v2}"


def test_the_cluster_role_is_enough_and_no_more(
    prepared: str, kubectl: str, registry: Any, tmp_path: Path
) -> None:
    objects = kustomize(kubectl, ROOT / "manifests" / "base")
    rbac = [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    apply = [kubectl, "--kubeconfig", prepared, "apply", "--server-side",
             "--field-manager=flux-oci-trigger-tests", "-f", "-"]  # fmt: skip
    code, out = _run(apply, _documents(rbac))
    assert code == 0, out
    as_exporter = _token_kubeconfig(kubectl, prepared, tmp_path / "exporter.kubeconfig")

    def can(verb: str, resource: str) -> bool:
        _, out = _run([kubectl, "--kubeconfig", as_exporter, "auth", "can-i", verb, resource,
                       "-n", NS])  # fmt: skip
        assert out.strip() in ("yes", "no"), out
        return out.strip() == "yes"

    flux = "source.toolkit.fluxcd.io"
    allowed = [("watch", f"ocirepositories.{flux}"), ("list", f"helmcharts.{flux}"),
               ("patch", f"ocirepositories.{flux}"), ("patch", f"helmcharts.{flux}"),
               ("get", "secrets"), ("get", "serviceaccounts"), ("create", "events"),
               ("list", "events.events.k8s.io"), ("watch", "events.events.k8s.io")]  # fmt: skip
    denied = [("patch", f"helmrepositories.{flux}"), ("update", f"ocirepositories.{flux}"),
              ("delete", f"ocirepositories.{flux}"), ("create", f"ocirepositories.{flux}"),
              ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"),
              ("list", "pods"), ("patch", "serviceaccounts"),
              ("delete", "events.events.k8s.io")]  # fmt: skip
    assert [a for a in allowed if not can(*a)] == []
    assert [d for d in denied if can(*d)] == []

    code, out = _run([kubectl, "--kubeconfig", prepared, "create", "namespace", NS])
    assert code == 0, out
    _requests_as(prepared, as_exporter, registry, NS)


def _requests_as(admin_kubeconfig: str, as_exporter: str, registry: Any, ns: str) -> None:
    """One ``run --once`` with the exporter's credentials requests the newer version."""
    import sys

    from kubernetes import client, config

    api = config.new_client_from_config(config_file=admin_kubeconfig)  # type: ignore[no-untyped-call]
    try:
        target = _objects_behind(api, registry, ns)
        ran = subprocess.run(
            [sys.executable, "-m", "exporter", "run", "--once", "--namespace", ns,
             "--kubeconfig", as_exporter],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert "HTTP 403" not in ran.stderr and "Forbidden" not in ran.stderr, ran.stderr
        obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "source.toolkit.fluxcd.io", "v1", ns, "ocirepositories", "app"
        )
        annotations = obj["metadata"]["annotations"]
        assert annotations["oci-trigger.gitlab.com/requested-revision"] == target
        assert "reconcile.fluxcd.io/requestedAt" in annotations
        events = client.CoreV1Api(api).list_namespaced_event(ns).items
        assert [e.reason for e in events] == ["ReconcileRequested"]
    finally:
        api.close()


def test_the_namespaced_roles_are_enough_and_stay_in_their_namespace(
    prepared: str, kubectl: str, registry: Any, tmp_path: Path
) -> None:
    """manifests/namespaced: no cluster-wide grant; its Role, bound in one namespace to a
    fresh ServiceAccount, serves a pass there and nothing elsewhere."""
    objects = kustomize(kubectl, ROOT / "manifests" / "namespaced")
    assert not [o["kind"] for o in objects if o["kind"].startswith("Cluster")]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]
           ["containers"][0]["env"]}  # fmt: skip
    assert env["FLUX_OCI_TRIGGER_NAMESPACES"] == "apps"
    cluster_role = next(o for o in kustomize(kubectl, ROOT / "manifests" / "base")
                        if o["kind"] == "ClusterRole")  # fmt: skip
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"] == cluster_role["rules"]

    ns, account = "rbac-namespaced", "flux-oci-trigger-namespaced"
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    role["metadata"]["namespace"] = binding["metadata"]["namespace"] = ns
    binding["subjects"][0]["name"] = account
    k = [kubectl, "--kubeconfig", prepared]
    code, out = _run([*k, "-n", "flux-oci-trigger", "create", "serviceaccount", account])
    assert code == 0, out
    code, out = _run([*k, "create", "namespace", ns])
    assert code == 0, out
    code, out = _run([*k, "apply", "--server-side", "-f", "-"], _documents([role, binding]))
    assert code == 0, out
    as_exporter = _token_kubeconfig(kubectl, prepared, tmp_path / "ns.kubeconfig", account)
    for where, expected in ((["-n", ns], "yes"), (["-n", "default"], "no"), (["-A"], "no")):
        _, out = _run([kubectl, "--kubeconfig", as_exporter, "auth", "can-i", "list",
                       "ocirepositories.source.toolkit.fluxcd.io", *where])  # fmt: skip
        assert out.strip() == expected, (where, out)
    _requests_as(prepared, as_exporter, registry, ns)


def test_the_notify_role_lets_a_ci_job_notify_and_no_more(prepared: str, kubectl: str) -> None:
    """manifests/notify, applied as its kustomization says, in a tenant namespace: the
    ServiceAccount ci-notify may create the notification Event and read the Flux sources
    there, and change no Flux object, read no Secret, notify no other namespace. The GitLab
    example binding gives the same to the jobs of project 42 as the agent impersonates them."""
    ns = "notify-tenant"
    k = [kubectl, "--kubeconfig", prepared]
    code, out = _run([*k, "create", "namespace", ns])
    assert code == 0, out
    notify = ROOT / "manifests" / "notify"
    for source in (["-k", str(notify)], ["-f", str(notify / "rolebinding-gitlab-ci-job.yaml")]):
        code, out = _run([*k, "apply", "--server-side", "--field-manager=flux-oci-trigger-tests",
                          *source, "-n", ns])  # fmt: skip
        assert code == 0, out

    def can(who: list[str], verb: str, resource: str, where: str = ns) -> bool:
        _, out = _run([*k, "auth", "can-i", verb, resource, "-n", where, *who])
        assert out.strip() in ("yes", "no"), out
        return out.strip() == "yes"

    flux = "source.toolkit.fluxcd.io"
    account = [f"--as=system:serviceaccount:{ns}:ci-notify"]
    allowed = [("create", "events.events.k8s.io"), ("get", f"ocirepositories.{flux}"),
               ("list", f"helmrepositories.{flux}"), ("watch", f"helmcharts.{flux}")]  # fmt: skip
    denied = [("patch", f"ocirepositories.{flux}"), ("update", f"helmcharts.{flux}"),
              ("delete", f"ocirepositories.{flux}"), ("create", f"ocirepositories.{flux}"),
              ("get", "secrets"), ("list", "secrets"), ("list", "events.events.k8s.io"),
              ("patch", "events.events.k8s.io"), ("create", "pods"),
              ("patch", "deployments.apps")]  # fmt: skip
    assert [a for a in allowed if not can(account, *a)] == []
    assert [d for d in denied if can(account, *d)] == []
    assert not can(account, "create", "events.events.k8s.io", "default")

    job = ["--as=gitlab:ci_job:1001", "--as-group=gitlab:ci_job", "--as-group=gitlab:group:7"]
    project = ["--as-group=gitlab:project:42"]
    assert can([*job, *project], "create", "events.events.k8s.io")
    assert can([*job, *project], "list", f"ocirepositories.{flux}")
    assert not can([*job, *project], "patch", f"ocirepositories.{flux}")
    assert not can([*job, *project], "get", "secrets")
    assert not can([*job, *project], "create", "events.events.k8s.io", "default")
    assert not can([*job, "--as-group=gitlab:project:43"], "create", "events.events.k8s.io")


def test_a_forbidden_patch_is_said_once_and_backed_off(
    prepared: str, kubectl: str, registry: Any, tmp_path: Path
) -> None:
    """A ServiceAccount that may read but not patch: one clear log line naming the missing
    permission, one Warning Event, no repeated attempts on the next checks."""
    import sys

    from kubernetes import config

    ns = "no-patch"
    k = [kubectl, "--kubeconfig", prepared]
    for args in (["create", "namespace", ns],
                 ["-n", "flux-oci-trigger", "create", "serviceaccount", "reader"]):  # fmt: skip
        code, out = _run([*k, *args])
        assert code == 0, out
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "reader", "namespace": ns},
        "rules": [
            {
                "apiGroups": ["source.toolkit.fluxcd.io"],
                "resources": ["ocirepositories", "helmrepositories", "helmcharts"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    }
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "reader", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader",
                             "namespace": "flux-oci-trigger"}]}  # fmt: skip
    code, out = _run([*k, "apply", "-f", "-"], _documents([role, binding]))
    assert code == 0, out
    as_reader = _token_kubeconfig(kubectl, prepared, tmp_path / "reader.kubeconfig", "reader")
    api = config.new_client_from_config(config_file=prepared)  # type: ignore[no-untyped-call]
    try:
        _objects_behind(api, registry, ns)
        log = tmp_path / "reader.log"
        with log.open("wb") as out_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "run", "--namespace", ns, "--interval", "1s",
                 "--tag-ttl", "1s", "--kubeconfig", as_reader, "--listen",
                 f"127.0.0.1:{free_port()}"],
                env={**os.environ, "FLUX_OCI_TRIGGER_MIN_INTERVAL": "1s"},
                stdout=out_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while "ReconcileRequestFailed" not in _event_reasons(api, ns):
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
                time.sleep(4)  # several checks at a 1 s interval: no second attempt
            finally:
                proc.terminate()
                proc.wait(timeout=15)
        text = log.read_text()
        assert text.count("reconcile request for OCIRepository/no-patch/app failed") == 1, text
        assert "needs 'patch' on ocirepositories.source.toolkit.fluxcd.io" in text
        assert _event_reasons(api, ns).count("ReconcileRequestFailed") == 1
    finally:
        api.close()


def _event_reasons(api: Any, ns: str) -> list[str]:
    from kubernetes import client

    return [e.reason or "" for e in client.CoreV1Api(api).list_namespaced_event(ns).items]


def test_the_workload_identity_layout_may_mint_service_account_tokens(
    prepared: str, kubectl: str, tmp_path: Path
) -> None:
    """manifests/workload-identity: its ClusterRole, bound to a fresh ServiceAccount, lets
    the exporter ask a token for a tenant's ServiceAccount (object-level workload identity)
    and still no more than the base rules otherwise; the base ClusterRole does not."""
    from kubernetes import client, config

    objects = kustomize(kubectl, ROOT / "manifests" / "workload-identity")
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    account = "flux-oci-trigger-wi"
    role["metadata"]["name"] = binding["metadata"]["name"] = binding["roleRef"]["name"] = account
    binding["subjects"][0]["name"] = account
    k = [kubectl, "--kubeconfig", prepared]
    code, out = _run([*k, "-n", "flux-oci-trigger", "create", "serviceaccount", account])
    assert code == 0, out
    code, out = _run([*k, "apply", "--server-side", "-f", "-"], _documents([role, binding]))
    assert code == 0, out
    tenant = "wi-tenant"
    code, out = _run([*k, "create", "namespace", tenant])
    assert code == 0, out
    code, out = _run([*k, "-n", tenant, "create", "serviceaccount", "reader"])
    assert code == 0, out
    as_exporter = _token_kubeconfig(kubectl, prepared, tmp_path / "wi.kubeconfig", account)
    for verb, expected in (
        (["create", "serviceaccounts", "--subresource=token"], "yes"),
        (["get", "serviceaccounts", "--subresource=token"], "no"),
        (["list", "secrets"], "no"),
    ):
        _, out = _run([kubectl, "--kubeconfig", as_exporter, "auth", "can-i", *verb, "-n", tenant])
        assert out.strip() == expected, (verb, out)
    api = config.new_client_from_config(config_file=as_exporter)  # type: ignore[no-untyped-call]
    try:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=["sts.amazonaws.com"])
        )
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(
            "reader", tenant, request
        )
        assert answer.status is not None and answer.status.token
        assert answer.spec is not None and answer.spec.audiences == ["sts.amazonaws.com"]
    finally:
        api.close()
