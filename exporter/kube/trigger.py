"""The one side effect: ask Flux to reconcile, and say so with an Event.

A reconcile request is a JSON merge patch of two annotations, exactly what
``flux reconcile`` writes plus our bookkeeping:

    reconcile.fluxcd.io/requestedAt: <RFC3339Nano, UTC>      any new value triggers Flux
    <prefix>requested-revision: <tag@sha256:... or chart version>

The second annotation is what makes "never twice for the same artifact" hold across
restarts and replicas. Patches go out under the field manager ``flux-oci-trigger`` (not
``kubectl*`` or ``before-first-apply``, which kustomize-controller takes over), at most
``rate`` per second overall. A 404 means the object is gone: not an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from exporter.flux.events import event_metadata
from exporter.kube import rest
from exporter.kube.discovery import Resource

log = logging.getLogger(__name__)

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FIELD_MANAGER = "flux-oci-trigger"
COMPONENT = "flux-oci-trigger"


class PatchError(Exception):
    """The API server refused or failed the patch; the message is safe to log."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ObjectRef:
    resource: Resource
    namespace: str
    name: str
    uid: str | None = None
    resource_version: str | None = None
    event_annotations: tuple[tuple[str, str], ...] = ()  # the object's, Flux forwards them


class RateLimiter:
    """A token bucket: at most ``rate`` acquisitions per second, bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a token; return how long we waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
            self._tokens -= 1
        if wait > 0:
            self._sleep(wait)
        return wait


class Trigger:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        annotation_prefix: str,
        rate: float,
        instance: str = COMPONENT,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._instance = instance[:128]  # the replica (exporter.kube.identity), API's limit
        self._api = api
        self._revision_key = f"{annotation_prefix}requested-revision"
        self._limiter = RateLimiter(rate, burst=max(1, int(rate)))
        self._wall_clock = wall_clock

    def wait_turn(self) -> None:
        """Block until the rate limit allows one more patch (call before :meth:`request`)."""
        self._limiter.acquire()

    def request(self, ref: ObjectRef, token: str, revision: str) -> bool:
        """Patch the two annotations; False when the object no longer exists."""
        body = {"metadata": {"annotations": {REQUESTED_AT: token, self._revision_key: revision}}}
        r = ref.resource
        try:
            rest.call(
                self._api,
                "PATCH",
                "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
                params={"group": r.group, "version": r.version, "namespace": ref.namespace,
                        "plural": r.plural, "name": ref.name},
                query=[("fieldManager", FIELD_MANAGER)],
                body=body,
                content_type=rest.MERGE_PATCH,
                timeout=(5, 10),
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                return False
            what = f"patch of {r.kind} {ref.namespace}/{ref.name} failed: HTTP {exc.status}"
            if exc.status == 403:  # RBAC: say what is missing
                what += (f" (forbidden: the exporter's ServiceAccount needs 'patch' on "
                         f"{r.plural}.{r.group} in namespace {ref.namespace})")  # fmt: skip
            raise PatchError(what, exc.status) from None
        except Exception as exc:  # connection and protocol failures
            raise PatchError(
                f"patch of {r.kind} {ref.namespace}/{ref.name} failed: {type(exc).__name__}"
            ) from None
        return True

    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        """Record an Event on the object; failures are logged, never raised. Its
        annotations are the metadata Flux's controllers put there too (the revision under
        the object's group, the object's ``event.toolkit.fluxcd.io/*`` annotations)."""
        now = self._wall_clock()
        stamp = datetime.fromtimestamp(now, tz=UTC)
        metadata = event_metadata(ref.resource.api_version, revision, ref.event_annotations)
        involved = {
            "apiVersion": ref.resource.api_version,
            "kind": ref.resource.kind,
            "name": ref.name,
            "namespace": ref.namespace,
            "resourceVersion": ref.resource_version,
            "uid": ref.uid,
        }
        body = {
            "action": "Reconcile" if reason == "ReconcileRequested" else "Check",
            "count": 1,
            "firstTimestamp": stamp.isoformat(),
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "lastTimestamp": stamp.isoformat(),
            "message": message[:1024],
            "metadata": {
                "name": f"{ref.name}.{int(now * 1e9):x}",
                "namespace": ref.namespace,
                **({"annotations": metadata} if metadata else {}),
            },
            "reason": reason,
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "source": {"component": COMPONENT},
            "type": "Warning" if warning else "Normal",
        }
        try:
            path = "/api/v1/namespaces/{namespace}/events"
            rest.call(self._api, "POST", path, params={"namespace": ref.namespace}, body=body)
        except Exception as exc:  # an Event is best effort; the log line still tells
            status = getattr(exc, "status", None) or type(exc).__name__
            log.warning(
                "event %s on %s %s/%s not recorded: %s",
                reason, ref.resource.kind, ref.namespace, ref.name, status,
            )  # fmt: skip
