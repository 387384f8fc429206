"""The rendered chart against a real API server: server-side apply, dry run, and an install.

Uses the session's control plane and the ``prepared`` fixture of
tests/ops/test_manifests_apply.py (monitoring CRDs, the flux-oci-trigger Namespace and
ServiceAccount, for real). Each value set is validated strictly (field validation,
admission, RBAC escalation checks); then helm installs one release for real, as users do:
the chart packaged, pushed to the session's registry and installed from oci://, and
uninstalls it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devenv.registry import RunningRegistry
from devenv.tools import versions
from tests.chart.render import CHART_VERSION, LAYOUTS, Objects, helm_env, push_chart, template
from tests.chart.test_chart import VALUE_SETS
from tests.ops.test_manifests_apply import _dry_run, _run, kubeconfig, prepared

__all__ = ["kubeconfig", "prepared"]

pytestmark = pytest.mark.cluster

# Namespaces the value sets name besides the release's: they must exist for a dry run.
# The API server is shared with other tests that create their own namespaces (team-a...):
# these names must not collide with theirs (namespaces cannot be deleted there).
OTHER_NAMESPACES = ("apps", "payments", "monitoring", "ops")


@pytest.fixture(scope="module")
def cluster(prepared: str, kubectl: str) -> str:
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                  for n in OTHER_NAMESPACES]  # fmt: skip
    code, out = _run([kubectl, "--kubeconfig", prepared, "apply", "--server-side", "-f", "-"],
                     yaml.safe_dump_all(namespaces))  # fmt: skip
    assert code == 0, out
    return prepared


def _applies(kubectl: str, kubeconfig: str, objects: Objects) -> None:
    code, out = _dry_run(kubectl, kubeconfig, objects)
    assert code == 0, out
    assert out.count("(server dry run)") == len(objects), out


def test_the_api_server_reports_its_release(cluster: str, kubectl: str) -> None:
    """helm checks the chart's kubeVersion against it: the local build must carry its
    version (scripts/build-tools links it in), as a release build does."""
    code, out = _run([kubectl, "--kubeconfig", cluster, "get", "--raw", "/version"])
    assert code == 0, out
    assert json.loads(out)["gitVersion"] == versions()["KUBERNETES_VERSION"], out


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_value_set_applies(cluster: str, kubectl: str, helm: str, name: str) -> None:
    _applies(kubectl, cluster, template(helm, VALUE_SETS[name]))


def test_a_misspelt_field_is_refused(cluster: str, kubectl: str, helm: str) -> None:
    """The dry run validates strictly, so the test above can fail."""
    objects = template(helm, LAYOUTS["events"])
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    ingress["spec"]["rules"][0]["http"]["paths"][0]["pathtype"] = "Prefix"
    code, out = _dry_run(kubectl, cluster, [ingress])
    assert code != 0 and "pathtype" in out, out


def test_pod_is_admitted_under_restricted_pod_security(
    cluster: str, kubectl: str, helm: str
) -> None:
    """Every Deployment's pod template, as a Pod, passes the namespace's `restricted` policy;
    values that drop the hardening are refused."""
    for values in (LAYOUTS["events"], LAYOUTS["sharded"]):
        for deployment in (o for o in template(helm, values) if o["kind"] == "Deployment"):
            template_ = deployment["spec"]["template"]
            meta = {**template_["metadata"], "name": "chart-check", "namespace": "flux-oci-trigger"}
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template_["spec"]}
            code, out = _dry_run(kubectl, cluster, [pod])
            assert code == 0, out
    loose = template(helm, {"securityContext": {"allowPrivilegeEscalation": True}})
    spec = copy.deepcopy(next(o for o in loose if o["kind"] == "Deployment")["spec"]["template"])
    meta = {**spec["metadata"], "name": "chart-check", "namespace": "flux-oci-trigger"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec["spec"]}
    code, out = _dry_run(kubectl, cluster, [pod])
    assert code != 0 and "restricted" in out, out


@pytest.mark.registry
def test_helm_installs_from_oci_and_uninstalls_a_release(
    cluster: str, kubectl: str, helm: str, registry: RunningRegistry, tmp_path: Path
) -> None:
    """helm itself against the API server, with the chart as a release publishes it:
    `helm package`, `helm push` to oci://, then `helm install oci://... --version` (namespace
    created by helm); the objects are there, uninstall removes them. Another release name,
    so no object is shared with the kustomize tests."""
    release, ns = "fot-live", "chart-live"
    chart = push_chart(helm, registry.host, tmp_path)
    values = tmp_path / "values.yaml"
    events = {
        "enabled": True,
        "secret": {"create": True, "tokens": {"gitlab": "t0ken-0123456789abcdef"}},
    }
    # helm creates the namespace (--create-namespace): the chart must not
    values.write_text(yaml.safe_dump({**LAYOUTS["events"], "events": events,
                                      "namespace": {"create": False}}))  # fmt: skip
    h = [helm, "--kubeconfig", cluster]
    install = subprocess.run(
        [*h, "install", release, chart, "--version", CHART_VERSION, "--plain-http",
         "--namespace", ns, "--create-namespace", "--values", str(values)],
        capture_output=True, text=True, timeout=180, env=helm_env(tmp_path),
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    try:
        code, out = _run([kubectl, "--kubeconfig", cluster, "-n", ns, "get",
                          "deployment,service,secret,servicemonitor,prometheusrule,role",
                          "-o", "name"])  # fmt: skip
        assert code == 0, out
        name = f"{release}-flux-oci-trigger"
        for expected in (f"deployment.apps/{name}", f"service/{name}-events",
                         f"secret/{name}-events", f"servicemonitor.monitoring.coreos.com/{name}",
                         f"prometheusrule.monitoring.coreos.com/{name}",
                         f"role.rbac.authorization.k8s.io/{name}-leader-election"):  # fmt: skip
            assert expected in out.split(), out
        code, out = _run([kubectl, "--kubeconfig", cluster, "get", "clusterrole", name])
        assert code == 0, out
        code, out = _run([*h, "list", "--namespace", ns, "--output", "json"])
        assert code == 0, out
        (listed,) = json.loads(out)
        assert listed["chart"] == f"flux-oci-trigger-{CHART_VERSION}", listed
    finally:
        code, out = _run([*h, "uninstall", release, "--namespace", ns, "--wait"])
    assert code == 0, out
    code, out = _run([kubectl, "--kubeconfig", cluster, "get", "clusterrole", name])
    assert code != 0 and "NotFound" in out, out
    subprocess.run([kubectl, "--kubeconfig", cluster, "delete", "namespace", ns, "--wait=false"],
                   capture_output=True, timeout=60, check=False)  # fmt: skip
