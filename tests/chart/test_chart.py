"""The chart: it lints strictly, renders each documented setting, refuses bad values."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
import yaml

from tests.chart.render import (
    CHART,
    LAYOUTS,
    MONITORING,
    Objects,
    Values,
    lint,
    template,
    template_error,
)
from tests.ops.conftest import ROOT

IMAGE = "registry.gitlab.com/flux-oci-trigger/flux-oci-trigger"
DIGEST = "sha256:" + "ab" * 32

TOKENS = {"gitlab": "t0ken-0123456789abcdef", "distribution": "Bearer 0123456789abcdef"}

# Settings beyond the layouts', together, as a user would combine them.
EVERYTHING: Values = {
    "image": {"digest": DIGEST, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "watchNamespaces": ["apps", "payments"],
    "events": {
        "enabled": True,
        "secret": {"create": True, "tokens": TOKENS},
        "ingress": {"enabled": True, "className": "nginx", "host": "hooks.example.org",
                    "tls": [{"secretName": "hooks-tls", "hosts": ["hooks.example.org"]}]},
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboard": {"enabled": True, "namespace": "monitoring",
                  "annotations": {"grafana_folder": "Flux"}},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                  "limits": {"cpu": "1", "memory": "1Gi"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "node-role", "operator": "In", "values": ["infra"]}]}]}}},
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "x@p.iam.example"}},
    "extraArgs": ["--tag-ttl", "5m"],
    "extraEnv": [{"name": "FLUX_OCI_TRIGGER_REGISTRY_CONCURRENCY", "value": "4"}],
}  # fmt: skip

VALUE_SETS: dict[str, Values] = {
    "defaults": {},
    **{f"layout-{k.replace('.', 'default')}": v for k, v in LAYOUTS.items()},
    "everything": EVERYTHING,
    "single": {"replicas": 1, "leaderElection": {"enabled": False},
               "podDisruptionBudget": {"enabled": False}},
    "existing-account": {"serviceAccount": {"create": False, "name": "exporter"}},
    "selector": {"watchLabelSelector": "team=platform", "fullnameOverride": "fot-platform"},
}  # fmt: skip


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]  # fmt: skip
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(objects: Objects, name: str = "flux-oci-trigger") -> dict[str, Any]:
    deployment = one(objects, "Deployment", name)
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in c["env"]}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lints_strictly(helm: str, name: str) -> None:
    out = lint(helm, VALUE_SETS[name])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_namespaced_in_the_release_or_cluster_wide(helm: str, name: str) -> None:
    objects = template(helm, VALUE_SETS[name], namespace="ops")
    assert objects
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    watched = set(VALUE_SETS[name].get("watchNamespaces", []))
    for o in objects:
        ns = o["metadata"].get("namespace")
        if o["kind"] in cluster_scoped:
            assert ns is None, o["kind"]
        elif o["kind"] in ("Role", "RoleBinding") and ns in watched:
            assert "leader-election" not in o["metadata"]["name"]
        elif o["kind"] == "ConfigMap":
            assert ns == VALUE_SETS[name].get("dashboard", {}).get("namespace") or ns == "ops"
        else:
            assert ns == "ops", (o["kind"], o["metadata"]["name"])
    for binding in (o for o in objects if o["kind"].endswith("RoleBinding")):
        assert [s["namespace"] for s in binding["subjects"]] == ["ops"]


def test_chart_versions_follow_the_project() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert chart["name"] == "flux-oci-trigger"


def test_defaults_run_two_replicas_cluster_wide_without_operator_objects(helm: str) -> None:
    objects = template(helm, {})
    assert sorted(o["kind"] for o in objects) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
         "PodDisruptionBudget", "Deployment", "Service"])  # fmt: skip
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container(objects)
    assert c["image"] == f"{IMAGE}:0.1.0"
    assert c["args"] == ["run", "--log-format", "json", "--leader-elect"]


def test_image_digest_and_tag(helm: str) -> None:
    assert container(template(helm, {"image": {"tag": "0.2.0"}}))["image"] == f"{IMAGE}:0.2.0"
    c = container(template(helm, {"image": {"digest": DIGEST, "pullPolicy": "Always"}}))
    assert c["image"] == f"{IMAGE}@{DIGEST}"
    assert c["imagePullPolicy"] == "Always"


def test_a_release_under_another_name_names_everything_after_it(helm: str) -> None:
    objects = template(helm, {**LAYOUTS["."], "events": {"enabled": True}}, release="edge")
    names = {o["metadata"]["name"] for o in objects if o["kind"] != "Namespace"}
    assert names == {"edge-flux-oci-trigger", "edge-flux-oci-trigger-leader-election",
                     "edge-flux-oci-trigger-events"}  # fmt: skip
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "edge-flux-oci-trigger"
    assert pod["volumes"][0]["secret"]["secretName"] == "edge-flux-oci-trigger-events"
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]


def test_watched_namespaces_get_a_role_each_and_no_cluster_role(helm: str) -> None:
    objects = template(helm, {"watchNamespaces": ["apps", "payments"]})
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"
             and o["metadata"]["name"] == "flux-oci-trigger"}  # fmt: skip
    assert sorted(roles) == ["apps", "payments"]
    leader = one(objects, "Role", "flux-oci-trigger-leader-election")
    cluster_role = one(template(helm, {}), "ClusterRole")
    assert all(r["rules"] == cluster_role["rules"] for r in roles.values())
    assert leader["rules"] != cluster_role["rules"]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"
                and o["metadata"]["name"] == "flux-oci-trigger"]  # fmt: skip
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["apps", "payments"]
    assert env(container(objects))["FLUX_OCI_TRIGGER_NAMESPACES"] == "apps,payments"


def test_shards_get_a_deployment_each_that_selects_only_its_pods(helm: str) -> None:
    objects = template(helm, {"shards": ["shard1", "shard2", "shard3"]})
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    selectors = {n: env(container(objects, n))["FLUX_OCI_TRIGGER_WATCH_LABEL_SELECTOR"]
                 for n in deployments}  # fmt: skip
    assert selectors == {
        "flux-oci-trigger": "!sharding.fluxcd.io/key",
        **{f"flux-oci-trigger-shard{i}": f"sharding.fluxcd.io/key=shard{i}" for i in (1, 2, 3)},
    }
    matches = [d["spec"]["selector"]["matchLabels"] for d in deployments.values()]
    for d in deployments.values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert [m for m in matches if m.items() <= labels.items()] == [
            d["spec"]["selector"]["matchLabels"]]  # fmt: skip
    # one Service, PodDisruptionBudget and ServiceAccount for all of them
    assert [o["kind"] for o in objects].count("Service") == 1
    assert [o["kind"] for o in objects].count("ServiceAccount") == 1


def test_a_single_instance_selector(helm: str) -> None:
    objects = template(helm, VALUE_SETS["selector"])
    assert env(container(objects, "fot-platform"))["FLUX_OCI_TRIGGER_WATCH_LABEL_SELECTOR"] == (
        "team=platform"
    )


def test_without_leader_election_no_lease_role(helm: str) -> None:
    objects = template(helm, VALUE_SETS["single"])
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding", "PodDisruptionBudget")]
    c = container(objects)
    assert "--leader-elect" not in c["args"]
    assert "POD_NAME" not in env(c)


def test_events_with_a_created_secret(helm: str) -> None:
    objects = template(helm, EVERYTHING)
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == "flux-oci-trigger-events"
    assert secret["stringData"] == TOKENS
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]
    events_volume = {"name": "events", "secret": {"secretName": "flux-oci-trigger-events"}}
    assert pod["spec"]["volumes"][0] == events_volume
    other = template(helm, {**EVERYTHING, "events": {**EVERYTHING["events"], "secret": {
        "create": True, "tokens": {"gitlab": "rotated-0123456789abcdef"}}}})  # fmt: skip
    checksum = "checksum/events-secret"
    assert one(other, "Deployment")["spec"]["template"]["metadata"]["annotations"][checksum] != (
        pod["metadata"]["annotations"][checksum]), "new tokens roll the pods"  # fmt: skip
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "hooks-tls", "hosts": ["hooks.example.org"]}]
    assert ingress["spec"]["rules"][0]["host"] == "hooks.example.org"
    c = container(objects)
    assert env(c)["FLUX_OCI_TRIGGER_EVENTS_LISTEN"] == "0.0.0.0:9799"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http-events": 9799, "http-metrics": 9798}  # fmt: skip


def test_an_ingress_for_any_host(helm: str) -> None:
    objects = template(helm, {"events": {"enabled": True, "ingress": {"enabled": True,
                                                                      "host": ""}}})  # fmt: skip
    (rule,) = one(objects, "Ingress")["spec"]["rules"]
    assert "host" not in rule
    assert rule["http"]["paths"][0]["path"] == "/hooks"


def test_events_with_an_existing_secret(helm: str) -> None:
    objects = template(helm, {"events": {"enabled": True, "secret": {"name": "hooks"}}})
    assert not [o for o in objects if o["kind"] in ("Secret", "Ingress")]
    pod = one(objects, "Deployment")["spec"]["template"]
    assert pod["spec"]["volumes"][0]["secret"] == {"secretName": "hooks"}
    assert "annotations" not in pod["metadata"]


def test_monitoring_objects_with_extra_labels(helm: str) -> None:
    objects = template(helm, EVERYTHING)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        labels = one(objects, kind)["metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack"
        assert labels["app.kubernetes.io/name"] == "flux-oci-trigger"
    # the chart's copy of manifests/monitoring/prometheusrule.yaml (test_sync checks the copy)
    copy = yaml.safe_load((CHART / "files" / "prometheusrule.yaml").read_text())
    assert one(objects, "PrometheusRule")["spec"] == copy["spec"]
    assert copy["spec"]["groups"][0]["rules"]


def test_the_dashboard_config_map_is_found_by_grafanas_sidecar(helm: str) -> None:
    objects = template(helm, EVERYTHING)
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Flux"}
    (data,) = config_map["data"].values()
    copy = (CHART / "files" / "flux-oci-trigger.json").read_text()  # see test_sync
    assert json.loads(data) == json.loads(copy)
    assert data.strip() == copy.strip()
    assert not [o for o in template(helm, MONITORING) if o["kind"] == "ConfigMap"]


def test_pod_settings_reach_the_pod(helm: str) -> None:
    objects = template(helm, EVERYTHING)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == EVERYTHING[key], key
    # node affinity as given, and the default anti-affinity kept beside it
    assert pod["affinity"]["nodeAffinity"] == EVERYTHING["affinity"]["nodeAffinity"]
    assert pod["affinity"]["podAntiAffinity"] == (
        one(template(helm, {}), "Deployment")["spec"]["template"]["spec"]["affinity"][
            "podAntiAffinity"])  # fmt: skip
    selector = {"matchLabels": {"app.kubernetes.io/name": "flux-oci-trigger"}}
    anti = {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": selector}]}  # fmt: skip
    replaced = one(template(helm, {"affinity": {"podAntiAffinity": anti}}), "Deployment")
    assert replaced["spec"]["template"]["spec"]["affinity"] == {"podAntiAffinity": anti}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/name": "flux-oci-trigger", "team": "platform"}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == (
        "platform"
    )
    c = container(objects)
    assert c["resources"] == {  # merged over the defaults, as Helm merges maps
        "requests": {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "32Mi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "256Mi"},
    }
    assert c["args"][-2:] == ["--tag-ttl", "5m"]
    assert c["env"][-1] == {"name": "FLUX_OCI_TRIGGER_REGISTRY_CONCURRENCY", "value": "4"}
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == EVERYTHING["serviceAccount"]["annotations"]


def test_object_level_workload_identity_and_the_default_account(helm: str) -> None:
    values = {"objectLevelWorkloadIdentity": True, "defaultServiceAccount": "flux-reader"}
    objects = template(helm, values)
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["FLUX_OCI_TRIGGER_OBJECT_LEVEL_WORKLOAD_IDENTITY"] == "true"
    assert env["FLUX_OCI_TRIGGER_DEFAULT_SERVICE_ACCOUNT"] == "flux-reader"
    rules = one(objects, "ClusterRole")["rules"]
    assert {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]} in (
        rules
    )
    plain = template(helm, {})
    assert "serviceaccounts/token" not in str(one(plain, "ClusterRole")["rules"])
    assert "WORKLOAD_IDENTITY" not in str(container(plain)["env"])


def test_security_context_can_be_changed(helm: str) -> None:
    """Keys merge over the defaults; null removes one."""
    capabilities = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    objects = template(helm, {"podSecurityContext": {"runAsUser": 1001, "fsGroup": None},
                              "securityContext": {"capabilities": capabilities}})  # fmt: skip
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 65532,
                                      "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    sc = pod["containers"][0]["securityContext"]
    assert sc["capabilities"] == capabilities
    assert sc["readOnlyRootFilesystem"] is True


def test_an_existing_service_account(helm: str) -> None:
    objects = template(helm, VALUE_SETS["existing-account"])
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == (
        "exporter"
    )
    for binding in (o for o in objects if o["kind"].endswith("RoleBinding")):
        assert binding["subjects"][0]["name"] == "exporter"


# values.schema.json and the templates' own checks: each bad value fails rendering, and the
# message names it.
BAD_VALUES: list[tuple[Values, str]] = [
    ({"replicas": 0}, "/replicas"),
    ({"replicas": "2"}, "/replicas"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ({"image": {"tag": "v1 beta"}}, "/image/tag"),
    ({"imag": {}}, "imag"),
    ({"watchNamespaces": ["Apps"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": "apps"}, "/watchNamespaces"),
    ({"shards": ["default"]}, "/shards/0"),
    ({"shards": ["a", "a"]}, "/shards"),
    ({"events": {"secret": {"tokens": {"gitlub": "x"}}}}, "gitlub"),
    ({"events": {"secret": {"tokens": {"gitlab": "short"}}}}, "/events/secret/tokens/gitlab"),
    ({"events": {"enabled": True, "port": 9798}}, "events.port must differ from metrics.port"),
    ({"events": {"port": 70000}}, "/events/port"),
    ({"events": {"ingress": {"host": "Hooks.Example.org"}}}, "/events/ingress/host"),
    ({"serviceMonitor": {"labels": {"release": 1}}}, "/serviceMonitor/labels/release"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
    ({"dashboard": {"labels": {"grafana_dashboard": 1}}}, "/dashboard/labels/grafana_dashboard"),
    ({"resources": {"limits": {"memroy": "1Gi"}}}, "memroy"),
    ({"extraArgs": [1]}, "/extraArgs/0"),
    ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
    ({"shards": ["s1"], "watchLabelSelector": "a=b"}, "set either shards or watchLabelSelector"),
    ({"leaderElection": {"enabled": False}}, "replicas > 1 needs leaderElection.enabled"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_bad_values_fail_rendering(helm: str, values: Values, named: str) -> None:
    assert named in template_error(helm, values)
