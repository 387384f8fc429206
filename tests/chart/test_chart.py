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
FLUX_EVENTS = "--events-addr=http://notification-controller.flux-system.svc.cluster.local./"

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

# Values a platform team carries over from kube-state-metrics' chart (kube-state-metrics-8.4.0,
# where the ServiceMonitor keys sit under prometheus.monitor): a mirror, its pull secret, the
# team's labels, a corporate CA bundle and proxy, the monitoring stack's conventions.
CA_VOLUME = {"name": "corporate-ca", "configMap": {"name": "corporate-ca-bundle"}}
CA_MOUNT = {"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}
RELABEL = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]
DROP = [{"action": "drop", "regex": "flux_oci_http_.*", "sourceLabels": ["__name__"]}]
COMMON = {"team": "platform", "cost-center": "cc-42"}
CARRIED: Values = {
    "global": {"imageRegistry": "harbor.example.com/proxy", "imagePullSecrets": ["mirror"]},
    "commonLabels": COMMON,
    "revisionHistoryLimit": 3,
    "serviceAccount": {"automountServiceAccountToken": False},
    "automountServiceAccountToken": True,
    "service": {"annotations": {"example.com/owner": "platform"}},
    "serviceMonitor": {"enabled": True, "namespace": "monitoring",
                       "additionalLabels": {"release": "kube-prometheus-stack"},
                       "interval": "1m", "scrapeTimeout": "20s",
                       "relabelings": RELABEL, "metricRelabelings": DROP},
    "prometheusRule": {"enabled": True},
    "dashboard": {"enabled": True},
    "namespace": {"create": True},
    "events": {"enabled": True, "secret": {"create": True, "tokens": TOKENS},
               "ingress": {"enabled": True}},
    "networkPolicy": {"enabled": True},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "extraVolumes": [CA_VOLUME],
    "extraVolumeMounts": [CA_MOUNT],
    "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/ssl/corporate/ca.crt"},
                 {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"},
                 {"name": "NO_PROXY", "value": "10.96.0.0/12,.svc,.cluster.local"}],
}  # fmt: skip

VALUE_SETS: dict[str, Values] = {
    "defaults": {},
    **{f"layout-{k.replace('.', 'default')}": v for k, v in LAYOUTS.items()},
    "everything": EVERYTHING,
    "carried": CARRIED,
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
        elif o["kind"] == "ServiceMonitor":
            assert ns == (VALUE_SETS[name]["serviceMonitor"].get("namespace") or "ops")
        else:
            assert ns == "ops", (o["kind"], o["metadata"]["name"])
    for binding in (o for o in objects if o["kind"].endswith("RoleBinding")):
        assert [s["namespace"] for s in binding["subjects"]] == ["ops"]


def test_chart_versions_follow_the_project() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert chart["name"] == "flux-oci-trigger"


def test_chart_metadata_names_the_project_and_the_oldest_kubernetes(helm: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    home = "https://gitlab.com/flux-oci-trigger/flux-oci-trigger"
    assert chart["home"] == home and chart["sources"] == [home]
    assert chart["maintainers"] == [{"name": "flux-oci-trigger maintainers", "url": home}]
    assert chart["kubeVersion"] == ">=1.21.0-0"  # README: supported versions
    message = template_error(helm, {}, "--kube-version", "1.20.15")
    assert "incompatible with Kubernetes v1.20.15" in message
    for version in ("1.21.0", "v1.30.2-eks-1234567"):  # a provider's build is a pre-release
        assert template(helm, {}, args=("--kube-version", version))


def test_defaults_run_two_replicas_cluster_wide_without_operator_objects(helm: str) -> None:
    objects = template(helm, {})
    assert sorted(o["kind"] for o in objects) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
         "PodDisruptionBudget", "Deployment", "Service"])  # fmt: skip
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container(objects)
    assert c["image"] == f"{IMAGE}:0.1.0"
    assert c["args"] == ["run", "--log-format", "json", "--leader-elect", FLUX_EVENTS]


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


def test_flux_events_go_to_the_address_given_or_nowhere(helm: str) -> None:
    address = "http://notification-controller.flux.svc:9090/"
    c = container(template(helm, {"fluxEvents": {"address": address}}))
    assert c["args"][-1] == f"--events-addr={address}"
    c = container(template(helm, {"fluxEvents": {"address": ""}}))
    assert not [a for a in c["args"] if a.startswith("--events-addr")]


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


# -- keys carried from kube-state-metrics' chart (kube-state-metrics-8.4.0) -----------------


def test_service_monitor_takes_kube_state_metrics_endpoint_keys(helm: str) -> None:
    monitor = one(template(helm, CARRIED), "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    # from its own namespace it still selects the Service in the release namespace
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["flux-oci-trigger"]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http-metrics", "path": "/metrics", "interval": "1m",
                        "scrapeTimeout": "20s", "honorLabels": True,
                        "relabelings": RELABEL, "metricRelabelings": DROP}  # fmt: skip


def test_service_monitor_keeps_its_older_keys(helm: str) -> None:
    """labels (this chart's name) and additionalLabels (kube-state-metrics') both apply; an
    empty interval leaves Prometheus' own, as in kube-state-metrics."""
    monitor = {"enabled": True, "labels": {"a": "1", "release": "old"},
               "additionalLabels": {"release": "kps"}, "interval": ""}  # fmt: skip
    found = one(template(helm, {"serviceMonitor": monitor}), "ServiceMonitor")
    assert found["metadata"]["namespace"] == "flux-oci-trigger"
    assert "namespaceSelector" not in found["spec"]
    assert {"a": "1", "release": "kps"}.items() <= found["metadata"]["labels"].items()
    assert found["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics",
                                           "honorLabels": True}]  # fmt: skip


def test_global_image_registry_takes_precedence_over_image_registry(helm: str) -> None:
    path = "flux-oci-trigger/flux-oci-trigger"
    mirror = {"image": {"registry": "mirror.example.com:5000"}}
    assert container(template(helm, mirror))["image"] == f"mirror.example.com:5000/{path}:0.1.0"
    both = {**mirror, "global": {"imageRegistry": "harbor.example.com/proxy"}}
    assert container(template(helm, both))["image"] == f"harbor.example.com/proxy/{path}:0.1.0"
    pinned = {"global": {"imageRegistry": "harbor.example.com"}, "image": {"digest": DIGEST}}
    assert container(template(helm, pinned))["image"] == f"harbor.example.com/{path}@{DIGEST}"
    # no registry: the repository is the whole name, as before image.registry existed
    whole = {"image": {"registry": "", "repository": "mirror.example.com/fot"}}
    assert container(template(helm, whole))["image"] == "mirror.example.com/fot:0.1.0"
    # a parent chart's other globals are its own business
    assert template(helm, {"global": {"storageClass": "fast", "imageRegistry": ""}})


def test_global_pull_secrets_come_first_by_name_or_map(helm: str) -> None:
    values = {"global": {"imagePullSecrets": ["mirror", {"name": "other"}]},
              "imagePullSecrets": ["regcred"]}  # fmt: skip
    pod = one(template(helm, values), "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "mirror"}, {"name": "other"}, {"name": "regcred"}]


@pytest.mark.parametrize("events", [False, True], ids=["metrics", "metrics-and-events"])
def test_network_policy_admits_the_ports_the_pods_serve(helm: str, events: bool) -> None:
    objects = template(helm, {"networkPolicy": {"enabled": True}, "events": {"enabled": events},
                              "shards": ["shard1"]})  # fmt: skip
    policy = one(objects, "NetworkPolicy")
    ports = ["http-metrics", "http-events"] if events else ["http-metrics"]  # in this order
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "flux-oci-trigger"}},
        "policyTypes": ["Ingress"],  # egress stays open: the API server, every registry
        "ingress": [{"ports": [{"port": p, "protocol": "TCP"} for p in ports]}],
    }
    selector = policy["spec"]["podSelector"]["matchLabels"].items()
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert sorted(p["name"] for p in c["ports"]) == sorted(ports)
    assert not [o for o in template(helm, {}) if o["kind"] == "NetworkPolicy"]


def test_network_policy_rules_given_replace_the_defaults(helm: str) -> None:
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    prometheus = [{"from": [{"namespaceSelector": monitoring}],
                   "ports": [{"port": "http-metrics"}]}]  # fmt: skip
    egress = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
              {"ports": [{"port": 53, "protocol": "UDP"}]}]  # fmt: skip
    rules = {"enabled": True, "ingress": prometheus, "egress": egress}
    policy = one(template(helm, {"networkPolicy": rules}), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == prometheus
    assert policy["spec"]["egress"] == egress


def test_common_labels_are_on_every_object_and_pod(helm: str) -> None:
    rendered = template(helm, CARRIED) + template(
        helm, {**CARRIED, "watchNamespaces": ["apps"], "shards": ["shard1"]})  # fmt: skip
    kinds = {o["kind"] for o in rendered}
    assert kinds == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                     "RoleBinding", "Deployment", "Service", "PodDisruptionBudget",
                     "ServiceMonitor", "PrometheusRule", "ConfigMap", "Secret", "Ingress",
                     "NetworkPolicy"}  # fmt: skip
    for o in rendered:
        assert COMMON.items() <= o["metadata"]["labels"].items(), (o["kind"], o["metadata"])
    for deployment in (o for o in rendered if o["kind"] == "Deployment"):
        assert COMMON.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert not COMMON.keys() & deployment["spec"]["selector"]["matchLabels"].keys()
    # an object's own labels win over the common ones
    values = {"commonLabels": {"release": "common", "team": "platform"},
              "podLabels": {"team": "pods"},
              "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}  # fmt: skip
    objects = template(helm, values)
    assert one(objects, "ServiceMonitor")["metadata"]["labels"]["release"] == "kps"
    assert one(objects, "Service")["metadata"]["labels"]["release"] == "common"
    assert one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]["team"] == "pods"


def test_service_annotations_are_on_the_metrics_service(helm: str) -> None:
    objects = template(helm, CARRIED)
    assert one(objects, "Service", "flux-oci-trigger")["metadata"]["annotations"] == {
        "example.com/owner": "platform"}  # fmt: skip
    assert "annotations" not in one(objects, "Service", "flux-oci-trigger-events")["metadata"]


def test_the_token_is_mounted_in_the_pod_only_when_asked(helm: str) -> None:
    """Unset by default (mounted); the ServiceAccount's off and the pod's on, as
    kube-state-metrics allows; off in the pod only with a token mounted otherwise."""
    objects = template(helm, {})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "automountServiceAccountToken" not in one(objects, "ServiceAccount")
    assert "automountServiceAccountToken" not in pod
    objects = template(helm, CARRIED)
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    # what the API server would mount: a bound token, the cluster's CA, the namespace
    ca = {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    namespace = {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
    token = {"name": "token", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
        {"configMap": ca}, {"downwardAPI": {"items": [namespace]}}]}}  # fmt: skip
    mount = {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
             "readOnly": True}  # fmt: skip
    values = {"automountServiceAccountToken": False, "extraVolumes": [token],
              "extraVolumeMounts": [mount]}  # fmt: skip
    pod = one(template(helm, values), "Deployment")["spec"]["template"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["containers"][0]["volumeMounts"][-1] == mount


def test_revision_history_limit_on_every_deployment(helm: str) -> None:
    objects = template(helm, {"revisionHistoryLimit": 0, "shards": ["shard1"]})
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert [d["spec"]["revisionHistoryLimit"] for d in deployments] == [0, 0]
    assert "revisionHistoryLimit" not in one(template(helm, {}), "Deployment")["spec"]


def test_topology_spread_defaults_to_each_deployments_pods(helm: str) -> None:
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule"}  # fmt: skip
    given = {**zone, "topologyKey": "kubernetes.io/hostname",
             "labelSelector": {"matchLabels": {"team": "platform"}}}  # fmt: skip
    objects = template(helm, {"topologySpreadConstraints": [zone, given], "shards": ["shard1"]})
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        own = deployment["spec"]["selector"]
        assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"] == [
            {**zone, "labelSelector": own}, given]  # fmt: skip


def test_extra_volumes_and_mounts_come_after_the_charts(helm: str) -> None:
    objects = template(helm, CARRIED)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["events", "tmp", "corporate-ca"]
    assert pod["volumes"][-1] == CA_VOLUME
    assert pod["containers"][0]["volumeMounts"][-1] == CA_MOUNT
    assert env(pod["containers"][0])["SSL_CERT_FILE"] == "/etc/ssl/corporate/ca.crt"


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
    ({"fluxEvents": {"address": "notification-controller:9090"}}, "/fluxEvents/address"),
    ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
    ({"shards": ["s1"], "watchLabelSelector": "a=b"}, "set either shards or watchLabelSelector"),
    ({"leaderElection": {"enabled": False}}, "replicas > 1 needs leaderElection.enabled"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    # keys carried from kube-state-metrics: typed, and checked where a wrong value would be
    # accepted and ignored (or rejected later by an operator)
    ({"prometheus": {"monitor": {"enabled": True}}}, "prometheus"),  # its spelling, not ours
    ({"serviceMonitor": {"scrapeInterval": "30s"}}, "scrapeInterval"),
    ({"serviceMonitor": {"scrapeTimeout": "10 s"}}, "/serviceMonitor/scrapeTimeout"),
    (
        {"serviceMonitor": {"enabled": True, "scrapeTimeout": "1m"}},
        "serviceMonitor.scrapeTimeout 1m is longer than serviceMonitor.interval 30s",
    ),
    ({"serviceMonitor": {"relabelings": [{"source_labels": ["a"]}]}}, "source_labels"),
    (
        {"serviceMonitor": {"metricRelabelings": [{"action": "delete"}]}},
        "/serviceMonitor/metricRelabelings/0/action",
    ),
    ({"serviceMonitor": {"namespace": "Monitoring"}}, "/serviceMonitor/namespace"),
    (
        {"serviceMonitor": {"additionalLabels": {"release": 1}}},
        "/serviceMonitor/additionalLabels/release",
    ),
    ({"image": {"registry": "https://mirror.example.com"}}, "/image/registry"),
    ({"image": {"repository": "mirror.example.com/fot"}}, "starts with a registry host"),
    ({"global": {"imageRegistry": 1}}, "/global/imageRegistry"),
    ({"global": {"imagePullSecrets": [{"nam": "x"}]}}, "/global/imagePullSecrets/0"),
    ({"commonLabels": {"app.kubernetes.io/name": "x"}}, "'app.kubernetes.io/name'"),
    ({"commonLabels": {"team": 1}}, "/commonLabels/team"),
    ({"service": {"type": "LoadBalancer"}}, "'type' not allowed"),
    ({"networkPolicy": {"enabled": True, "flavor": "cilium"}}, "'flavor' not allowed"),
    (
        {"networkPolicy": {"ingress": [{"from": [{"podSelectr": {}}]}]}},
        "/networkPolicy/ingress/0/from/0",
    ),
    (
        {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]},
        "/topologySpreadConstraints/0",
    ),
    ({"extraVolumes": [{"name": "tmp", "emptyDir": {}}]}, "/extraVolumes/0/name"),
    ({"extraVolumes": [{"name": "ca"}]}, "/extraVolumes/0"),
    (
        {"extraVolumeMounts": [{"name": "ca", "mountPath": "/tmp"}]},
        "/extraVolumeMounts/0/mountPath",
    ),
    ({"revisionHistoryLimit": -1}, "/revisionHistoryLimit"),
    ({"automountServiceAccountToken": "false"}, "/automountServiceAccountToken"),
    ({"automountServiceAccountToken": False}, "the exporter needs its token"),
    ({"serviceAccount": {"automountServiceAccountToken": False}}, "the exporter needs its token"),
    (
        {"serviceAccount": {"create": False, "name": "x", "automountServiceAccountToken": True}},
        "applies to the ServiceAccount the chart creates",
    ),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_bad_values_fail_rendering(helm: str, values: Values, named: str) -> None:
    assert named in template_error(helm, values)
