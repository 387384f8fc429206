"""Flux's event payload: what a Flux controller POSTs to notification-controller for each
Event it records, so that an ``Alert`` routes ours like source-controller's.

The shape is ``Event`` of fluxcd/pkg ``apis/event/v1beta1`` (v0.27.1), built as
``runtime/events.Recorder`` (v0.110.1, which source-controller v1.9.3 links) builds it:

- ``involvedObject``: the object's reference; notification-controller v1.9.2 matches an
  Alert's ``eventSources`` on its kind and namespace (and name, or ``*``), and reads the
  API group from its ``apiVersion``;
- ``severity``: ``error`` for a Warning Event, ``info`` for a Normal one;
- ``timestamp``: RFC 3339, whole seconds (``metav1.Time``);
- ``metadata``: the object's own ``event.toolkit.fluxcd.io/*`` annotations, as the
  recorder forwards them, and ``<group>/revision``. notification-controller keeps only
  keys under those two prefixes and hands them to the provider without the prefix
  (``revision``); it also counts ``<group>/revision`` in its duplicate key;
- ``reportingController`` and ``reportingInstance`` (the recorder uses the host name,
  which is the pod's).

Pure: the time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

EVENT_GROUP = "event.toolkit.fluxcd.io"
REVISION_KEY = "revision"
MAX_MESSAGE = 39_000  # the API's limit on ``message``
INFO, ERROR = "info", "error"


def forwarded_annotations(annotations: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The object's annotations Flux's recorder adds to every event's metadata: those
    under ``event.toolkit.fluxcd.io/`` (an Alert shows them, prefix stripped)."""
    prefix = EVENT_GROUP + "/"
    return tuple(sorted((k, v) for k, v in annotations.items() if k.startswith(prefix)))


def event_metadata(
    api_version: str, revision: str, forwarded: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """The metadata of an event about an object of ``api_version``: the forwarded
    annotations, and the revision under the object's API group, as Flux's controllers
    write it (``source.toolkit.fluxcd.io/revision``)."""
    metadata = dict(forwarded)
    group = api_version.rpartition("/")[0]
    if revision and group:
        metadata[f"{group}/{REVISION_KEY}"] = revision
    return metadata


def flux_event(
    *,
    kind: str,
    api_version: str,
    namespace: str,
    name: str,
    uid: str | None,
    resource_version: str | None,
    warning: bool,
    reason: str,
    message: str,
    metadata: Mapping[str, str],
    timestamp: float,
    controller: str,
    instance: str,
) -> dict[str, Any]:
    """The JSON body of one event, as notification-controller decodes it."""
    reference = {
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "uid": uid or "",
        "apiVersion": api_version,
        "resourceVersion": resource_version or "",
    }
    body: dict[str, Any] = {
        "involvedObject": {k: v for k, v in reference.items() if v},  # Go's omitempty
        "severity": ERROR if warning else INFO,
        "timestamp": datetime.fromtimestamp(int(timestamp), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "message": message[:MAX_MESSAGE],
        "reason": reason,
    }
    if metadata:  # the fields in Go's order, omitempty as there
        body["metadata"] = dict(metadata)
    body["reportingController"] = controller
    if instance:
        body["reportingInstance"] = instance
    return body
