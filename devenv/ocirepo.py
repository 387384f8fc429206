"""An opted-in OCIRepository and what Flux applied to it: shared by the demo and benchmarks."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

GROUP, VERSION, PLURAL = "source.toolkit.fluxcd.io", "v1", "ocirepositories"


def create_namespace(api: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )


def create_opted_in(
    api: client.ApiClient, namespace: str, name: str, url: str, semver: str | None = None,
    *, tag: str | None = None,
) -> None:  # fmt: skip
    """Flux interval 1h: only a reconcile request makes Flux look again soon. The ref is
    ``semver``, or ``tag`` (a mutable tag followed by digest)."""
    if (semver is None) == (tag is None):
        raise ValueError("give exactly one of semver and tag")
    ref = {"semver": semver} if semver is not None else {"tag": tag}
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "OCIRepository",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": {"oci-trigger.gitlab.com/enabled": "true"}},
            "spec": {"url": url, "interval": "1h", "ref": ref, "insecure": True},
        },
    )  # fmt: skip


def applied_revision(api: client.ApiClient, namespace: str, name: str) -> str:
    obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return str(((obj.get("status") or {}).get("artifact") or {}).get("revision", ""))


def wait_for_revision(
    api: client.ApiClient, namespace: str, name: str, prefix: str, timeout: float = 180
) -> float:
    """Seconds until status.artifact.revision starts with ``prefix``."""
    started = time.monotonic()
    while not applied_revision(api, namespace, name).startswith(prefix):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"Flux did not apply {prefix} within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started
