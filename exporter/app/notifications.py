"""The ``notify`` channel, exporter side: ``OCIArtifactPushed`` Events become nudges.

One informer per watched namespace (or one for all) on ``events.k8s.io/v1`` Events,
field-selected on their reason, so the API server sends ours only. What existed before
the first list is not replayed (the first full check after a start covers it); an Event
created while the watch was away is found by the relist that follows (its UID is new).
Each new notification is a nudge for the targets on its repository in its own
namespace (every namespace for one of ``everywhere``), handed to the engine like a push
event: counted as ``source="kubernetes"``, coalesced per repository, never the truth.
A standby replica sees the Events but leaves them to the leader.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from exporter.core.hooks import HookSource
from exporter.core.notify import FIELD_SELECTOR, InvalidReference, notification, nudge_for
from exporter.kube.discovery import Resource
from exporter.kube.informer import ApiListWatch, Informer, KubeObserver
from exporter.model import EventResult
from exporter.web.listener import Count, Deliver

log = logging.getLogger(__name__)
EVENTS = Resource("Event", "events.k8s.io", "v1", "events")
SOURCE = HookSource.KUBERNETES


class NotificationChannel:
    def __init__(
        self,
        api: Any,
        namespaces: Sequence[str],
        deliver: Deliver,
        count: Count,
        *,
        observer: KubeObserver,
        leading: Callable[[], bool] = lambda: True,
        everywhere: Collection[str] = (),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._deliver = deliver
        self._count = count
        self._leading = leading
        self._everywhere = frozenset(everywhere)
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # UIDs of the Events that exist (and were handled)
        self.informers = [
            Informer(
                ApiListWatch(api, EVENTS, namespace, field_selector=FIELD_SELECTOR),
                self._on_event,
                observer=observer,
                keep=_identity,
            )
            for namespace in (namespaces or (None,))
        ]

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def signal_stop(self) -> None:
        for informer in self.informers:
            informer.signal_stop()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for informer in self.informers:
            informer.join(deadline - time.monotonic())

    def _on_event(self, kind: str, resource: Resource, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata")
        uid = str(meta.get("uid") or "") if isinstance(meta, dict) else ""
        namespace = str(meta.get("namespace") or "") if isinstance(meta, dict) else ""
        with self._lock:
            if kind == "DELETED":
                self._seen.discard(uid)
                return
            if not uid or uid in self._seen:
                return  # a change to one already handled (or a list repeating it)
            self._seen.add(uid)
        if not self._listed(namespace):
            return  # it was there before we started: not replayed
        received = self._wall_clock()
        try:
            found = notification(obj)
        except InvalidReference as exc:
            self._count(SOURCE.value, EventResult.INVALID)
            log.info("notification %s/%s refused: %s", namespace,
                     meta.get("name") if isinstance(meta, dict) else "?", exc)  # fmt: skip
            return
        if found is None:
            return
        if not self._leading():
            return  # the leader acts on it; a standby only keeps its copy
        where, ref = found
        log.info("notification from %s: %s", where, ref)
        self._deliver(SOURCE, [nudge_for(where, ref, everywhere=where in self._everywhere)],
                      received)  # fmt: skip

    def _listed(self, namespace: str) -> bool:
        """Whether the informer this Event came through has finished its first list."""
        for informer in self.informers:
            if informer.namespace in (None, namespace):
                return informer.synced.is_set()
        return False


def _identity(event: dict[str, Any]) -> dict[str, Any]:
    """What the informer keeps of a notification: enough to tell it is gone on a relist
    (about 100 bytes, not the Event's 3.5 KB: a tenant creating many costs little)."""
    meta = event.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta}}
