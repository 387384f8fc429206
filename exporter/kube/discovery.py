"""Which Flux source kinds the API server serves, and in which version.

Flux has served OCIRepository as v1beta2 and then v1; HelmRepository and HelmChart as
v1beta2 and then v1. Asking the server (rather than assuming) lets one exporter build
run against every Flux 2.x still in support. Kinds not served are left out, not an error:
a cluster without helm sources still gets its OCIRepositories watched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from exporter.kube import rest
from exporter.kube.errors import KubeError

SOURCE_GROUP = "source.toolkit.fluxcd.io"


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


# kind -> (plural, versions in order of preference)
WANTED: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "OCIRepository": ("ocirepositories", ("v1", "v1beta2")),
    "HelmRepository": ("helmrepositories", ("v1", "v1beta2")),
    "HelmChart": ("helmcharts", ("v1", "v1beta2")),
}


def discover(api: k8s.ApiClient) -> dict[str, Resource]:
    """The served version of each Flux kind we read; kinds not served are left out."""
    served: dict[str, set[str]] = {}
    try:
        groups = rest.call(api, "GET", "/apis/")["groups"]
        ours = [g for g in groups if g["name"] == SOURCE_GROUP]
        for version in [v["version"] for g in ours for v in g["versions"]]:
            path, params = "/apis/{group}/{version}", {"group": SOURCE_GROUP, "version": version}
            for res in rest.call(api, "GET", path, params=params)["resources"]:
                served.setdefault(res["name"], set()).add(version)
    except ApiException as exc:
        raise KubeError(f"discovery of {SOURCE_GROUP} failed: HTTP {exc.status}") from None
    except Exception as exc:  # connection refused, TLS, timeouts
        raise KubeError(f"discovery of {SOURCE_GROUP} failed: {type(exc).__name__}") from None
    found: dict[str, Resource] = {}
    for kind, (plural, preferred) in WANTED.items():
        for version in preferred:
            if version in served.get(plural, set()):
                found[kind] = Resource(kind, SOURCE_GROUP, version, plural)
                break
    return found
