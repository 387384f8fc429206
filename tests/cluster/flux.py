"""What the cluster tests do to Flux objects: create, request a reconcile, wait for status."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE = "source.toolkit.fluxcd.io"
HELM = "helm.toolkit.fluxcd.io"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FIELD_MANAGER = "flux-client-side-apply"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def is_ready(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return (
        ready is not None
        and ready.get("status") == "True"
        and ready.get("observedGeneration") == obj["metadata"]["generation"]
    )


def revision(obj: dict[str, Any]) -> str | None:
    artifact = obj.get("status", {}).get("artifact") or {}
    found = artifact.get("revision")
    return str(found) if found is not None else None


def wait_for(
    read: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    what: str,
    logs: Path,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll ``read`` until ``done``; on timeout fail with the last object and the log tails."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = read()
        except Exception as exc:  # not created yet: the API answers 404
            if getattr(exc, "status", None) != 404:
                raise
        else:
            if done(last):
                return last
        time.sleep(0.1)
    tails = "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted(logs.glob("*-controller.log"))
    )
    status = last.get("status")
    raise AssertionError(f"{what} not reached in {timeout:.0f}s; last status: {status}\n{tails}")


def request_reconcile(custom: Any, plural: str, namespace: str, name: str) -> str:
    """Set requestedAt with a JSON merge patch, as the flux CLI does; returns the token."""
    token = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    custom.patch_namespaced_custom_object(
        SOURCE, "v1", namespace, plural, name,
        {"metadata": {"annotations": {REQUESTED_AT: token}}},
        field_manager=FIELD_MANAGER,
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    return token
