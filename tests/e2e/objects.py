"""Flux objects as the e2e tests create them on the bare API server, with the status
source-controller would have written (no controller runs there)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

GROUP, VERSION = "source.toolkit.fluxcd.io", "v1"


def namespace(api: client.ApiClient, name: str) -> str:
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def oci_repository(
    api: client.ApiClient,
    ns: str,
    name: str,
    url: str,
    ref: dict[str, str],
    annotations: dict[str, str],
    *,
    applied: str | None = None,
    suspend: bool = False,
    insecure: bool = True,
    cert_secret: str | None = None,
) -> None:
    custom = client.CustomObjectsApi(api)
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OCIRepository",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"url": url, "interval": "1h", "ref": ref, "insecure": insecure,
                 "suspend": suspend},
    }  # fmt: skip
    if cert_secret is not None:
        body["spec"]["certSecretRef"] = {"name": cert_secret}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "ocirepositories", body)
    if applied is not None:  # where source-controller records what it applied
        status = {
            "status": {
                "artifact": {
                    "revision": applied,
                    "digest": "sha256:" + "0" * 64,
                    "path": "x",
                    "url": "http://x",
                    "lastUpdateTime": "2026-01-01T00:00:00Z",
                },
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Succeeded",
                        "message": "stored artifact",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 1,
                    }
                ],
            }
        }
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ns,
            "ocirepositories",
            name,
            status,
            _content_type="application/merge-patch+json",
        )
