"""Kustomize manifests: they build, run locked down, and hold least-privilege RBAC."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import yaml

from tests.ops.conftest import ROOT, kustomize

NAMESPACE = "flux-oci-trigger"
IMAGE = "registry.gitlab.com/flux-oci-trigger/flux-oci-trigger"
FLUX = "source.toolkit.fluxcd.io"
FLUX_EVENTS = "--events-addr=http://notification-controller.flux-system.svc.cluster.local./"
# (apiGroup, resource, verb): everything the exporter may do, and nothing else.
PERMISSIONS = {
    *((FLUX, r, v) for r in ("ocirepositories", "helmrepositories", "helmcharts")
      for v in ("get", "list", "watch")),
    (FLUX, "ocirepositories", "patch"),
    (FLUX, "helmcharts", "patch"),
    ("", "secrets", "get"),
    ("", "serviceaccounts", "get"),
    *((g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")),
    ("events.k8s.io", "events", "list"),  # the notifications of `notify`
    ("events.k8s.io", "events", "watch"),
}  # fmt: skip
# What a CI job running `notify` may do in its own namespace (manifests/notify): create its
# Event, and read the Flux sources for --wait.
NOTIFY_PERMISSIONS = {
    ("events.k8s.io", "events", "create"),
    *((FLUX, r, v) for r in ("ocirepositories", "helmrepositories", "helmcharts")
      for v in ("get", "list", "watch")),
}  # fmt: skip

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def everything(kubectl: str) -> Objects:
    return kustomize(kubectl, ROOT / "manifests")


@pytest.fixture(scope="module")
def base(kubectl: str) -> Objects:
    return kustomize(kubectl, ROOT / "manifests" / "base")


def one(objects: Objects, kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def test_builds_every_object(everything: Objects, base: Objects) -> None:
    expected = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                "Role", "RoleBinding", "PodDisruptionBudget",
                "Deployment", "Service", "ServiceMonitor", "PrometheusRule"]  # fmt: skip
    assert sorted(o["kind"] for o in everything) == sorted(expected)
    assert not [o for o in base if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert len(base) == len(everything) - 2


def test_namespaced_objects_live_in_their_own_namespace(everything: Objects) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for o in everything:
        if o["kind"] not in cluster_scoped:
            assert o["metadata"]["namespace"] == NAMESPACE, o["kind"]
    namespace = one(everything, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_image_is_the_project_version(everything: Objects) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    pod = one(everything, "Deployment")["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [f"{IMAGE}:{version}"]


def test_deployment_runs_locked_down(everything: Objects) -> None:
    deployment = one(everything, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flux-oci-trigger"
    assert pod.get("automountServiceAccountToken", True) is True  # it talks to the API
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not sc.get("privileged")
    for kind in ("requests", "limits"):  # ephemeral-storage: /tmp and the logs
        assert {"cpu", "memory", "ephemeral-storage"} <= set(container["resources"][kind]), kind
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts  # the only writable path


def test_deployment_runs_the_service_with_probes_on_the_metrics_port(
    everything: Objects,
) -> None:
    (container,) = one(everything, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][:1] == ["run"]
    assert container["args"][1:] == ["--log-format", "json", "--leader-elect", FLUX_EVENTS]
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": 9798, "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}


def test_service_and_service_monitor_reach_the_pod(everything: Objects) -> None:
    pod_labels = one(everything, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(everything, "Service")
    assert service["metadata"]["name"] == "flux-oci-trigger"  # the job label of the alerts
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9798, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    monitor = one(everything, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # keep the Flux object's namespace label
    # the job comes from a Service label, not the Service's name: the alerts' job whatever
    # the Service is called (a Helm release, a shard)
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    rules = (ROOT / "alerts" / "flux-oci-trigger.rules.yaml").read_text()
    assert f'up{{job="{job}"}}' in rules


def _permissions(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted


def test_cluster_role_is_least_privilege(everything: Objects) -> None:
    role = one(everything, "ClusterRole")
    granted = _permissions(role)
    assert not [p for p in granted if "*" in p], "no wildcards"
    assert granted == PERMISSIONS
    secrets = {verb for group, resource, verb in granted if resource == "secrets"}
    assert secrets == {"get"}, "secrets are read by name, never listed or watched"
    patched = {resource for _, resource, verb in granted if verb in ("patch", "update")}
    assert patched == {"ocirepositories", "helmcharts", "events"}
    assert not [p for p in granted if p[2] in ("delete", "deletecollection", "update")]
    assert "aggregationRule" not in role


def test_role_is_bound_to_the_service_account(everything: Objects) -> None:
    binding = one(everything, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(everything, "ClusterRole")["metadata"]["name"],
    }
    account = one(everything, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_the_events_layout_adds_a_listener_of_its_own(kubectl: str) -> None:
    objects = kustomize(kubectl, ROOT / "manifests" / "events")
    deployment = one(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLUX_OCI_TRIGGER_EVENTS_LISTEN"] == "0.0.0.0:9799"
    assert env["FLUX_OCI_TRIGGER_LISTEN"] == "0.0.0.0:9798"  # metrics stay where they were
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http-metrics": 9798, "http-events": 9799}  # fmt: skip
    services = {s["metadata"]["name"]: s for s in objects if s["kind"] == "Service"}
    events = services["flux-oci-trigger-events"]
    assert [p["targetPort"] for p in events["spec"]["ports"]] == ["http-events"]
    ingress = one(objects, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/hooks"
    assert path["backend"]["service"] == {"name": "flux-oci-trigger-events",
                                          "port": {"name": "http-events"}}  # fmt: skip
    mounted = {m["name"]: m for m in container["volumeMounts"]}
    assert mounted["events"]["readOnly"] is True


def test_two_replicas_elect_a_leader_on_a_lease_in_their_own_namespace(
    everything: Objects,
) -> None:
    deployment = one(everything, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}  # fmt: skip
    pod = spec["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    container = pod["containers"][0]
    assert "--leader-elect" in container["args"]
    pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    role = one(everything, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]  # fmt: skip
    binding = one(everything, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "flux-oci-trigger", "namespace": NAMESPACE}]  # fmt: skip
    budget = one(everything, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_sharded_layout_runs_two_shards_and_the_rest(kubectl: str) -> None:
    objects = kustomize(kubectl, ROOT / "manifests" / "sharded")
    deployments = {d["metadata"]["name"]: d for d in objects if d["kind"] == "Deployment"}
    selectors = {}
    for name, deployment in deployments.items():
        env = {e["name"]: e.get("value")
               for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
        selectors[name] = env["FLUX_OCI_TRIGGER_WATCH_LABEL_SELECTOR"]
        match = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= match.items()
    assert selectors == {
        "flux-oci-trigger": "!sharding.fluxcd.io/key",
        "flux-oci-trigger-shard1": "sharding.fluxcd.io/key=shard1",
        "flux-oci-trigger-shard2": "sharding.fluxcd.io/key=shard2",
    }
    instances = [d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"]
                 for d in deployments.values()]  # fmt: skip
    assert sorted(instances) == ["default", "shard1", "shard2"]  # no selector takes another's pods
    for deployment in deployments.values():  # each instance alike: labelled, spread apart
        match = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == match["app.kubernetes.io/instance"]
        (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]  # fmt: skip
        assert term["podAffinityTerm"]["labelSelector"] == {"matchLabels": match}


def test_the_workload_identity_layout_adds_token_requests_and_the_setting(kubectl: str) -> None:
    """manifests/workload-identity: object-level workload identity, which alone needs the
    exporter to create ServiceAccount tokens; nothing else changes."""
    objects = kustomize(kubectl, ROOT / "manifests" / "workload-identity")
    granted = _permissions(one(objects, "ClusterRole"))
    assert granted == PERMISSIONS | {("", "serviceaccounts/token", "create")}
    env = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FLUX_OCI_TRIGGER_OBJECT_LEVEL_WORKLOAD_IDENTITY", "value": "true"} in env
    base = kustomize(kubectl, ROOT / "manifests" / "base")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in base
    )


@pytest.mark.parametrize(
    "layout", [".", "base", "namespaced", "events", "sharded", "notify", "workload-identity"]
)
def test_every_object_of_every_layout_is_labelled_part_of(kubectl: str, layout: str) -> None:
    objects = kustomize(kubectl, ROOT / "manifests" / layout)
    unlabelled = [(o["kind"], o["metadata"]["name"]) for o in objects
                  if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of")
                  != "flux-oci-trigger"]  # fmt: skip
    assert unlabelled == []


def test_the_notify_role_is_least_privilege(kubectl: str) -> None:
    """manifests/notify: a Role for a tenant namespace that creates Events and reads the
    Flux sources (for --wait), and can change nothing else."""
    objects = kustomize(kubectl, ROOT / "manifests" / "notify")
    assert sorted(o["kind"] for o in objects) == ["Role", "RoleBinding", "ServiceAccount"]
    assert [o for o in objects if "namespace" in o["metadata"]] == []  # the one applied in
    role = one(objects, "Role")
    assert role["metadata"]["name"] == "flux-oci-trigger-notify"
    assert role["metadata"]["labels"]["app.kubernetes.io/name"] == "flux-oci-trigger"
    granted = _permissions(role)
    assert granted == NOTIFY_PERMISSIONS
    assert not [p for p in granted if "*" in p], "no wildcards"
    assert not [p for p in granted if p[1] in ("secrets", "serviceaccounts", "pods")]
    writes = ("create", "patch", "update", "delete", "deletecollection")
    assert [p for p in granted if p[2] in writes] == [("events.k8s.io", "events", "create")]
    assert "aggregationRule" not in role


def test_the_notify_bindings_name_the_role_and_their_subject(kubectl: str) -> None:
    """The ServiceAccount binding of the kustomization (its subject: the ServiceAccount
    next to it, in the binding's namespace) and the GitLab CI job example."""
    objects = kustomize(kubectl, ROOT / "manifests" / "notify")
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                "name": one(objects, "Role")["metadata"]["name"]}  # fmt: skip
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"] == role_ref
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert account == "ci-notify"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    path = ROOT / "manifests" / "notify" / "rolebinding-gitlab-ci-job.yaml"
    (gitlab,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert gitlab["kind"] == "RoleBinding" and "namespace" not in gitlab["metadata"]
    assert gitlab["metadata"]["name"] == "flux-oci-trigger-notify"
    assert gitlab["roleRef"] == role_ref
    assert gitlab["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                   "name": "gitlab:project:42"}]  # fmt: skip
    assert "access_as:" in path.read_text() and "ci_job: {}" in path.read_text()
