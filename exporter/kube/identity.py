"""Who this replica is and where its Lease lives: from the pod (downward API), else the host."""

from __future__ import annotations

import hashlib
import re
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SHARD_KEY = "sharding.fluxcd.io/key"
_SHARD = re.compile(rf"^\s*{re.escape(SHARD_KEY)}\s*==?\s*([A-Za-z0-9._-]+)\s*$")


def identity(env: Mapping[str, str]) -> str:
    """``POD_NAME`` (set from the downward API in the manifests), else host and a nonce."""
    return env.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_namespace(configured: str) -> str:
    if configured:
        return configured
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "flux-oci-trigger"
    except OSError:
        return "flux-oci-trigger"


def shard_of(selector: str) -> str:
    """The shard a selector names: ``shard1`` for ``sharding.fluxcd.io/key=shard1``,
    ``default`` for one that excludes the key, a short digest for any other, ``""`` for none."""
    if not selector.strip():
        return ""
    match = _SHARD.match(selector)
    if match:
        return match.group(1)
    if selector.strip() == f"!{SHARD_KEY}":
        return "default"
    return hashlib.sha256(selector.encode()).hexdigest()[:8]


def lease_name(configured: str, selector: str) -> str:
    if configured:
        return configured
    shard = shard_of(selector)
    return f"flux-oci-trigger-{shard}" if shard else "flux-oci-trigger"
