"""Kubernetes reads: list and watch Flux's objects (``exporter.kube.discovery`` finds them).

One informer thread per (resource, namespace scope) LISTs once, then WATCHes from the list's
resourceVersion. A watch that ends (server timeout) resumes from the last resourceVersion
seen (bookmarks keep it fresh); only a 410 Gone forces a new LIST. API errors back off
exponentially (``exporter.core.backoff``: 1 s doubling to 60 s, ±20 %). There are no
periodic LISTs. An outage is counted (``kube_failed``) and logged once per symptom,
whichever it shows: a failed call, a watch that ends well before its timeout (cut), or a
410 when the watch resumes after a cut or a failure (the server came back without the
history in between).

The two calls are a ``ListWatch`` handed to the informer: ``ApiListWatch`` makes them
through the API server's custom objects endpoints; tests hand in their own. Objects are
handed on as plain dicts (the API's JSON): field paths are read only by
``exporter.flux.sources``. kubernetes client exceptions do not leave this module: callers
see ``KubeError``.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines as _iter_resp_lines

from exporter.core.backoff import Backoff
from exporter.flux.fields import slim
from exporter.kube import rest
from exporter.kube.discovery import Resource
from exporter.kube.errors import KubeError

log = logging.getLogger(__name__)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
LIST_PAGE = 500
WATCH_TIMEOUT_SECONDS = 290  # server-side; a new watch resumes from the last resourceVersion
CUT_MARGIN = 10  # seconds: a watch ending sooner than its timeout less this was cut
API_BACKOFF = Backoff(1.0, 60.0)  # after a failed call or a watch that ended at once

Obj = dict[str, Any]
_lines: Callable[[Any], Iterator[str]] = _iter_resp_lines  # the client's own line splitter


Handler = Callable[[str, Resource, Obj], None]  # (event type, resource, object)


class WatchStream(Protocol):
    """One open watch: its events (``{"type": ..., "object": ...}``), in order."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]: ...

    def abort(self) -> None:
        """From another thread: end the blocked read now."""

    def close(self) -> None:
        """From the reading thread, once done: hand the connection back."""


class ListWatch(Protocol):
    """The calls an informer makes, for one resource in one scope (a namespace or all).

    ``list`` returns one page of at most ``LIST_PAGE`` objects (``items``, and in
    ``metadata`` the ``continue`` token and the ``resourceVersion``); ``watch`` streams the
    changes after ``resource_version``. Failures raise; an ``ApiException`` with status
    410 from ``watch`` says the version has expired.
    """

    @property
    def resource(self) -> Resource: ...

    @property
    def namespace(self) -> str | None: ...

    def list(self, continue_token: str | None) -> Mapping[str, Any]: ...

    def watch(self, resource_version: str) -> WatchStream: ...


class ApiListWatch:
    """``ListWatch`` through the API server's custom objects endpoints, as plain JSON (no
    generated models); selectors narrow both calls (sharding by label, as Flux does;
    notifications by field)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        resource: Resource,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> None:
        self._api = api
        self._resource = resource
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector

    @property
    def resource(self) -> Resource:
        return self._resource

    @property
    def namespace(self) -> str | None:
        return self._namespace

    def list(self, continue_token: str | None) -> Mapping[str, Any]:
        page: dict[str, Any] = {"limit": LIST_PAGE, "continue": continue_token}
        result: Mapping[str, Any] = self._call(timeout=(10, 60), **page)
        return result

    def watch(self, resource_version: str) -> WatchStream:
        return _ResponseStream(
            self._call(
                watch=True,
                resourceVersion=resource_version,
                allowWatchBookmarks=True,
                timeoutSeconds=WATCH_TIMEOUT_SECONDS,
                timeout=(10, WATCH_TIMEOUT_SECONDS + 30),
            )
        )

    def _call(self, *, watch: bool = False, timeout: rest.Timeout, **query: Any) -> Any:
        """A LIST page's JSON or, with ``watch``, the WATCH's unread response. ``query``: the
        API's parameters by their own names (``limit``, ``continue``, ``resourceVersion``)."""
        r = self._resource
        params = {"group": r.group, "version": r.version, "plural": r.plural}
        path = "/apis/{group}/{version}/{plural}"
        if self._namespace:
            params["namespace"] = self._namespace
            path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        query["labelSelector"] = self._label_selector or None
        query["fieldSelector"] = self._field_selector or None
        query["watch"] = watch or None
        ordered = sorted(query.items())
        if watch:
            return rest.stream(self._api, path, params=params, query=ordered, timeout=timeout)
        return rest.call(self._api, "GET", path, params=params, query=ordered, timeout=timeout)


class _ResponseStream:
    """A watch response read line by line; ``abort`` shuts its socket down, since closing
    the response from another thread would wait for the reader's lock."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return _events(self._response)

    def abort(self) -> None:
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("watch socket already closed")

    def close(self) -> None:
        self._response.release_conn()


class KubeObserver(Protocol):
    """Told of every LIST and every failed call, to export them (``exporter.metrics``)."""

    def kube_listed(self, resource: str) -> None: ...

    def kube_failed(self, resource: str) -> None: ...


class _Unobserved:
    def kube_listed(self, resource: str) -> None:
        pass

    def kube_failed(self, resource: str) -> None:
        pass


class Informer:
    """Keeps an up-to-date copy of one resource's objects in one scope (a namespace or all),
    as ``calls`` lists and watches them."""

    def __init__(
        self,
        calls: ListWatch,
        on_event: Handler,
        *,
        observer: KubeObserver | None = None,
        backoff: Backoff = API_BACKOFF,
        keep: Callable[[Obj], Obj] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._calls = calls
        self._clock = clock
        self._keep = keep or (lambda obj: obj)  # what the copy holds of each object
        self.resource = calls.resource
        self.namespace = calls.namespace
        self._on_event = on_event
        self._backoff = backoff
        self._observer = observer or _Unobserved()
        self._objects: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self.synced = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            name=f"informer-{self.resource.plural}-{self.namespace or 'all'}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait for the thread (at most ``timeout`` seconds)."""
        self.signal_stop()
        self._thread.join(timeout=timeout)

    def signal_stop(self) -> None:
        """Ask the thread to end, without waiting: the blocked read of the watch is aborted."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.abort()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=max(0.0, timeout))

    def objects(self) -> list[Obj]:
        with self._lock:
            return list(self._objects.values())

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0  # in a row: failed calls and watches that ended at once
        resource_version: str | None = None
        interrupted = False  # since the last LIST or full-length watch: a cut or a failure
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    interrupted = False
                started = self._clock()
                resource_version = self._watch(resource_version)
                lasted = self._clock() - started
                if self._stop.is_set():
                    return
                if lasted < WATCH_TIMEOUT_SECONDS - CUT_MARGIN:
                    # the server ends a watch at its timeout: sooner, it went away (a restart,
                    # a network cut). Counted, so an outage that only cuts watches is seen.
                    self._observer.kube_failed(self.resource.plural)
                    log.warning("watch of %s was cut after %.0fs; resuming", self._what(), lasted)
                    interrupted = True
                    if lasted < 1.0:  # ended at once: resume with back-off, not in a loop
                        failures += 1
                        self._stop.wait(self._backoff.delay(failures) * random.uniform(0.8, 1.2))
                    else:
                        failures = 0
                else:
                    interrupted = False
                    failures = 0
            except _Gone:
                if interrupted:  # the server came back without the history we missed
                    self._observer.kube_failed(self.resource.plural)
                    log.warning("watch of %s resumed after an interruption but expired (410); "
                                "listing again", self._what())  # fmt: skip
                else:
                    log.info("watch of %s expired (410); listing again", self._what())
                resource_version = None
            except Exception as exc:  # API errors, connection and protocol failures
                if self._stop.is_set():
                    return
                interrupted = True
                failures += 1
                delay = self._backoff.delay(failures)
                self._observer.kube_failed(self.resource.plural)
                log.warning("%s failed: %s; retrying in %.0fs", self._what(), _describe(exc), delay)
                self._stop.wait(delay * random.uniform(0.8, 1.2))

    def _what(self) -> str:
        return f"{self.resource.plural} in {self.namespace or 'all namespaces'}"

    def _list(self) -> str:
        """LIST in pages of ``LIST_PAGE`` (as client-go's reflector does): ten thousand
        objects never sit in memory twice, as raw JSON and parsed."""
        self._observer.kube_listed(self.resource.plural)
        items: list[Obj] = []
        token: str | None = None
        while True:
            result = self._calls.list(token)
            items.extend(_slim(o) for o in result.get("items") or [])
            meta = result.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                break
        fresh = {_key(o): self._keep(o) for o in items}
        with self._lock:
            gone = [o for k, o in self._objects.items() if k not in fresh]
            self._objects = fresh
        for obj in gone:
            self._on_event("DELETED", self.resource, obj)
        for obj in items:
            self._on_event("ADDED", self.resource, obj)
        self.synced.set()
        rv: str = meta.get("resourceVersion", "")
        return rv

    def _watch(self, resource_version: str) -> str:
        try:
            stream = self._calls.watch(resource_version)
        except ApiException as exc:
            if exc.status == 410:  # some servers refuse an expired version before streaming
                raise _Gone() from None
            raise
        self._stream = stream
        try:
            for event in stream:
                if self._stop.is_set():
                    break
                resource_version = self._apply(event, resource_version)
        finally:
            self._stream = None
            stream.close()
        return resource_version

    def _apply(self, event: Mapping[str, Any], resource_version: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise KubeError(f"watch error: {obj.get('reason')} {obj.get('message', '')[:200]}")
        rv = str(obj.get("metadata", {}).get("resourceVersion") or resource_version)
        if kind == "BOOKMARK":
            return rv
        obj = _slim(obj)
        key = _key(obj)
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = self._keep(obj)
        self._on_event(str(kind), self.resource, obj)
        return rv


class _Gone(Exception):
    pass


def _events(resp: Any) -> Iterator[Mapping[str, Any]]:
    for line in _lines(resp):
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            raise KubeError("watch stream sent invalid JSON") from None


def _slim(obj: Obj) -> Obj:
    """Keep what the exporter reads (``flux.fields.slim``): not ``managedFields``, kubectl's
    copy of the object, or the status Flux writes for people (several KB per object);
    and keep it with its strings shared (``_shared``)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    shared: Obj = _shared(slim(obj))
    return shared


def _shared(value: Any) -> Any:
    """``value`` with every string interned. Objects repeat their keys and most of their
    values (apiVersion, kind, namespace, annotations, interval, URL, ...), yet each
    parsed object holds copies of its own, all of them when it came alone in a watch
    event: measured on OCIRepositories, 1.5 KB kept per object instead of 2.1 KB from a
    LIST page and 3.2 KB from a watch event."""
    if isinstance(value, dict):
        return {_intern(k): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    return _intern(value)


def _intern(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    return type(exc).__name__ + (f": {exc}" if isinstance(exc, KubeError) else "")
