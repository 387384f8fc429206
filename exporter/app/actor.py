"""Side effects off the coordinator: reconcile patches and Events, in order, on one thread.

The coordinator decides; this thread does what was decided, behind the patch rate limit,
so a slow API server or a burst of requests never holds up checks. Actions run in the
order they were queued. A patch's outcome is handed back through ``on_patched`` (the
engine updates the target's memory then); a successful request is followed by its
``ReconcileRequested`` Event. Events are best effort (the sink logs its own failures).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from exporter.flux.targets import TargetId
from exporter.kube.trigger import ObjectRef, PatchError

log = logging.getLogger(__name__)


class Patcher(Protocol):
    def wait_turn(self) -> None:
        """Block until the patch rate limit allows one more."""
        ...

    def request(self, ref: ObjectRef, token: str, revision: str) -> bool:
        """Patch the reconcile annotations; False when the object is gone; PatchError."""
        ...


class EventSink(Protocol):
    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        """Record it; ``revision``: the one the Event is about, when there is one."""
        ...


class EventSinks:
    """Every Event to each sink in turn (Flux's notification-controller, the API server);
    one sink's bug does not keep the Event from the others."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = sinks

    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        for sink in self._sinks:
            try:
                sink.event(ref, reason, message, warning=warning, revision=revision)
            except Exception:  # the sinks handle their failures; this is a bug
                log.exception("recording %s on %s %s/%s failed unexpectedly",
                              reason, ref.resource.kind, ref.namespace, ref.name)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Patch:
    target: TargetId
    ref: ObjectRef
    token: str
    revision: str
    applied: str  # what Flux applied, for the log line and the Event


@dataclass(frozen=True, slots=True)
class Patched:
    """How a :class:`Patch` went: ``ok`` and ``existed`` false means the object is gone."""

    patch: Patch
    ok: bool
    existed: bool
    skipped: bool = False  # not sent: this replica no longer leads
    error: str = ""  # why the patch failed (safe to log and to put in an Event)


@dataclass(frozen=True, slots=True)
class _Event:
    ref: ObjectRef
    reason: str
    message: str
    warning: bool
    revision: str


class Actor:
    """Queues patches and Events; also an :class:`EventSink` that never blocks."""

    def __init__(
        self,
        patcher: Patcher,
        events: EventSink,
        on_patched: Callable[[Patched], None],
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._leading = leading  # asked right before each patch: a lapsed leader sends none
        self._patcher = patcher
        self._events = events
        self._on_patched = on_patched
        self._queue: queue.Queue[Patch | _Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="actor", daemon=True)
        self._thread.start()

    def patch(self, patch: Patch) -> None:
        self._queue.put(patch)

    def event(
        self,
        ref: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        revision: str = "",
    ) -> None:
        self._queue.put(_Event(ref, reason, message, warning, revision))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is done (``check``, ``--once``, tests)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, name="actor-flush", daemon=True).start()
        return done.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued (bounded by ``timeout``), then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("stopping with %d side effects not done (API server slow or away)",
                        self._queue.qsize())  # fmt: skip

    def _run(self) -> None:
        while True:
            action = self._queue.get()
            try:
                if action is None:
                    return
                if isinstance(action, Patch):
                    self._do_patch(action)
                elif self._leading():
                    self._events.event(
                        action.ref, action.reason, action.message,
                        warning=action.warning, revision=action.revision,
                    )  # fmt: skip
            except Exception:  # the sinks handle their failures; this is a bug
                log.exception("side effect failed unexpectedly")
                if isinstance(action, Patch):  # the engine must hear of it, or wait for ever
                    self._on_patched(Patched(action, ok=False, existed=True, error="internal"))
            finally:
                self._queue.task_done()

    def _do_patch(self, patch: Patch) -> None:
        self._patcher.wait_turn()  # the rate limit first: leadership is judged after the wait
        if not self._leading():
            log.warning("not the leader any more: request for %s (%s) not sent", patch.target,
                        patch.revision, extra=patch.target.log_fields(patch.revision))  # fmt: skip
            self._on_patched(Patched(patch, ok=False, existed=True, skipped=True))
            return
        try:
            existed = self._patcher.request(patch.ref, patch.token, patch.revision)
        except PatchError as exc:
            log.warning("reconcile request for %s failed: %s", patch.target, exc,
                        extra=patch.target.log_fields(patch.revision))  # fmt: skip
            self._on_patched(Patched(patch, ok=False, existed=True, error=str(exc)))
            return
        self._on_patched(Patched(patch, ok=existed, existed=existed))
        if existed:
            log.info("requested reconciliation of %s: %s -> %s",
                     patch.target, patch.applied, patch.revision,
                     extra=patch.target.log_fields(patch.revision))  # fmt: skip
            self._events.event(
                patch.ref, "ReconcileRequested",
                f"new artifact {patch.revision} (applied: {patch.applied}); "
                "reconciliation requested",
                revision=patch.revision,
            )  # fmt: skip
