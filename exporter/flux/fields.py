"""Readers for raw Flux objects, shared by every kind: metadata, conditions, status,
access (secrets, service account, CA, provider) and registry URLs.

Input is the object as the API server returns it. Nothing is trusted to be well-formed:
a missing or mistyped field reads as absent, and a problem is appended to the caller's
list rather than raised, so that every problem of an object is reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.flux.annotations import (
    ENABLED,
    opted_out,
)
from exporter.flux.cloud import is_known_provider
from exporter.flux.events import forwarded_annotations
from exporter.flux.revision import (
    AppliedRevision,
    RevisionProblem,
)
from exporter.flux.targets import (
    Access,
    TargetId,
    TargetKind,
)
from exporter.model import RepositoryRef

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
METADATA = ("name", "namespace", "uid", "resourceVersion", "annotations")  # what is read

Obj = Mapping[str, Any]


def get(obj: Obj, *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def text(obj: Obj, *path: str) -> str | None:
    value = get(obj, *path)
    return value if isinstance(value, str) and value else None


def flag(obj: Obj, *path: str) -> bool:
    return get(obj, *path) is True


def annotations_of(obj: Obj) -> dict[str, str]:
    raw = get(obj, "metadata", "annotations")
    if not isinstance(raw, Mapping):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def claimed(annotations: Mapping[str, str], prefix: str) -> bool:
    return prefix + ENABLED in annotations and not opted_out(annotations, prefix)


def object_id(obj: Obj, kind: TargetKind) -> TargetId:
    return TargetId(
        kind, text(obj, "metadata", "namespace") or "", text(obj, "metadata", "name") or ""
    )


def slim(obj: Obj) -> dict[str, Any]:
    """The object with only what these modules read: of the metadata the name, namespace,
    uid, resourceVersion and annotations (``managedFields``, labels, finalizers and the
    rest go), the spec, and of the status the artifact's revision and time, the Ready
    condition, ``observedGeneration`` and ``lastHandledReconcileAt`` (condition messages,
    artifact URLs and metadata go). What is kept is the API's own values, untouched."""
    found = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        found["metadata"] = {k: meta[k] for k in METADATA if k in meta}
    status = obj.get("status")
    if not isinstance(status, dict):
        return found
    kept: dict[str, Any] = {
        k: status[k] for k in ("observedGeneration", "lastHandledReconcileAt") if k in status
    }
    artifact = status.get("artifact")
    if isinstance(artifact, dict):
        kept["artifact"] = {k: artifact[k] for k in ("revision", "lastUpdateTime") if k in artifact}
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        kept["conditions"] = [
            {k: c[k] for k in ("type", "status", "reason") if k in c}
            for c in conditions
            if isinstance(c, dict) and c.get("type") == "Ready"
        ]
    found["status"] = kept
    return found


def ready_condition(obj: Obj) -> tuple[bool | None, str | None]:
    conditions = get(obj, "status", "conditions")
    if not isinstance(conditions, list):
        return None, None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            status = condition.get("status")
            reason = condition.get("reason")
            ready = {"True": True, "False": False}.get(status) if isinstance(status, str) else None
            return ready, reason if isinstance(reason, str) else None
    return None, None


def access_of(obj: Obj) -> Access:
    return Access(
        secret=text(obj, "spec", "secretRef", "name"),
        service_account=text(obj, "spec", "serviceAccountName"),
        cert_secret=text(obj, "spec", "certSecretRef", "name"),
        proxy_secret=text(obj, "spec", "proxySecretRef", "name"),
        insecure=flag(obj, "spec", "insecure"),
        provider=text(obj, "spec", "provider") or "generic",
    )


def status_fields(obj: Obj) -> dict[str, Any]:
    """The fields every target reads the same way from status and annotations."""
    annotations = annotations_of(obj)
    ready, ready_reason = ready_condition(obj)
    return {
        "api_version": text(obj, "apiVersion") or "",
        "uid": text(obj, "metadata", "uid"),
        "resource_version": text(obj, "metadata", "resourceVersion"),
        "event_annotations": forwarded_annotations(annotations),
        "suspended": flag(obj, "spec", "suspend"),
        "artifact_updated_at": text(obj, "status", "artifact", "lastUpdateTime"),
        "ready": ready,
        "ready_reason": ready_reason,
        "last_handled_reconcile_at": text(obj, "status", "lastHandledReconcileAt"),
        "requested_at": annotations.get(REQUESTED_AT),
    }


def applied_fields(parsed: AppliedRevision | RevisionProblem | None) -> dict[str, Any]:
    if isinstance(parsed, RevisionProblem):
        return {"applied": None, "applied_problem": parsed.reason}
    return {"applied": parsed, "applied_problem": None}


def repository_ref(url: str | None, field: str, problems: list[str]) -> RepositoryRef | None:
    if url is None:
        problems.append(f"{field} is missing")
        return None
    try:
        return RepositoryRef.parse(url)
    except ValueError as exc:
        problems.append(f"{field}: {exc}")
        return None


def unsupported_reason(access: Access) -> str | None:
    """What Flux itself would not do: a provider its auth library does not implement."""
    if not is_known_provider(access.provider):
        return f"spec.provider {access.provider[:40]!r}: not implemented by Flux"
    return None
