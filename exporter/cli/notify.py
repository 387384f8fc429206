"""``flux-oci-trigger notify``: a CI job tells the exporter it pushed, through the API server.

For each context (``--context``, ``--all-contexts`` or the current one) and each reference,
one ``OCIArtifactPushed`` Event is created in the namespace (``--namespace``, else the
context's, else ``default``): nothing else is written, no registry is contacted, no Flux
object is touched. With ``--wait``, the Flux sources of that namespace on the pushed
repository are read every second until each whose rule selects the artifact has applied
it (or one its rule prefers), or the time is up.

Exit codes:
    0  notified (with --wait: applied wherever it is selected)
    1  --wait: no opted-in object in scope selects the artifact
    2  invalid input (a reference, a duration, a context that does not exist)
    3  --wait: timed out; the objects still behind are listed with Flux's Ready message
    4  the API server cannot be used, or refuses (the missing permission is named)
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter.core.notify import Progress, PushedRef, event_body, in_scope, progress
from exporter.flux.targets import Target
from exporter.kube.errors import config_reason

EXIT_OK = 0
EXIT_NONE_SELECTED = 1
EXIT_INVALID = 2
EXIT_TIMEOUT = 3
EXIT_KUBE = 4
POLL = 1.0  # seconds between reads of the Flux sources while waiting
FLUX = ("source.toolkit.fluxcd.io", "v1")
KINDS = (("OCIRepository", "ocirepositories"), ("HelmRepository", "helmrepositories"),
         ("HelmChart", "helmcharts"))  # fmt: skip
_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class NotifyError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Cluster:
    """One context of the kubeconfig (None: in-cluster), its API client and namespace."""

    context: str | None
    namespace: str
    api: Any


@dataclass
class Sent:
    context: str | None
    namespace: str
    ref: PushedRef
    event: str


@dataclass
class Watched:
    context: str | None
    kind: str
    namespace: str
    name: str
    ref: PushedRef
    state: Progress = Progress.WAITING
    seconds: float | None = None  # from the notification to applied
    ready: str = ""  # Flux's Ready condition, when still behind


@dataclass
class Outcome:
    code: int
    sent: list[Sent] = field(default_factory=list)
    watched: list[Watched] = field(default_factory=list)
    message: str = ""


def clusters(
    kubeconfig: str | None, context: str | None, all_contexts: bool, namespace: str | None
) -> list[Cluster]:
    """The API clients to notify through; raises NotifyError (2: no such context, 4: no
    usable configuration)."""
    from kubernetes import client as k8s
    from kubernetes import config

    k8s_config: Any = config  # untyped functions
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except (k8s_config.ConfigException, OSError) as exc:
        if kubeconfig is None and os.path.exists(_IN_CLUSTER_NAMESPACE) and not context:
            k8s_config.load_incluster_config()
            with open(_IN_CLUSTER_NAMESPACE, encoding="utf-8") as own:
                return [Cluster(None, namespace or own.read().strip(), k8s.ApiClient())]
        raise NotifyError(EXIT_KUBE, f"no usable kubeconfig: {config_reason(exc)}") from None
    by_name = {c["name"]: c for c in contexts or []}
    if all_contexts:
        chosen = list(by_name)
    elif context:
        if context not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise NotifyError(EXIT_INVALID, f"no context {context!r} in the kubeconfig "
                              f"(it has: {known})")  # fmt: skip
        chosen = [context]
    elif current:
        chosen = [current["name"]]
    else:
        raise NotifyError(EXIT_INVALID, "the kubeconfig has no current context: give --context")
    found = []
    for name in chosen:
        ns = namespace or (by_name[name].get("context") or {}).get("namespace") or "default"
        try:
            api = k8s_config.new_client_from_config(config_file=kubeconfig, context=name)
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            raise NotifyError(EXIT_KUBE, f"context {name}: {config_reason(exc)}") from None
        found.append(Cluster(name, ns, api))
    return found


def send(cluster: Cluster, ref: PushedRef, instance: str) -> Sent:
    """Create the notification Event; raises NotifyError (4) naming a refused permission."""
    from kubernetes import client as k8s

    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = event_body(ref, cluster.namespace, when, instance)
    events: Any = k8s.EventsV1Api(cluster.api)
    try:
        created = events.create_namespaced_event(cluster.namespace, body, _request_timeout=(10, 20))
    except Exception as exc:
        raise _kube_error(exc, cluster, "create events.events.k8s.io") from None
    return Sent(cluster.context, cluster.namespace, ref, str(created.metadata.name))


def read_sources(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """The namespace's Flux sources, as the API serves them; raises NotifyError (4)."""
    from kubernetes import client as k8s

    api: Any = k8s.CustomObjectsApi(cluster.api)
    found: dict[str, list[dict[str, Any]]] = {}
    for kind, plural in KINDS:
        try:
            listed = api.list_namespaced_custom_object(
                *FLUX, cluster.namespace, plural, _request_timeout=(10, 20)
            )
        except Exception as exc:
            raise _kube_error(exc, cluster, f"list {plural}.{FLUX[0]}") from None
        found[kind] = list(listed.get("items") or [])
    return found


def run(
    clusters_: Sequence[Cluster],
    refs: Sequence[PushedRef],
    *,
    wait: float | None,
    prefix: str,
    instance: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Notify every cluster of every reference; with ``wait``, follow until applied."""
    from exporter.app.catalog import Catalog

    outcome = Outcome(EXIT_OK)
    # one per cluster: an object is parsed again only when its resourceVersion changed
    catalogs = [Catalog(prefix, min_interval=1, default_interval=60) for _ in clusters_]
    before: dict[tuple[str | None, str, str, str], str | None] = {}
    if wait is not None:  # what was applied before the notification: for mutable tags
        for cluster, catalog in zip(clusters_, catalogs, strict=True):
            for (kind, ns, name), revision in _applied(cluster, catalog).items():
                before[(cluster.context, kind, ns, name)] = revision
    started = clock()
    for cluster in clusters_:
        for ref in refs:
            outcome.sent.append(send(cluster, ref, instance))
    if wait is None:
        return outcome
    deadline = started + wait
    while True:
        watched = []
        for cluster, catalog in zip(clusters_, catalogs, strict=True):
            objects = read_sources(cluster)
            parsed, _ = catalog.update(objects)
            raw = {(o.get("kind", kind), _name(o)): o for kind, items in objects.items()
                   for o in items}  # fmt: skip
            for target_id, entry in sorted(parsed.items()):
                target = entry.source
                if not isinstance(target, Target):
                    continue
                for ref in refs:
                    if not in_scope(target, ref):
                        continue
                    was = before.get((cluster.context, target_id.kind.value,
                                      target_id.namespace, target_id.name))  # fmt: skip
                    state = progress(target, ref, was)
                    item = Watched(cluster.context, target_id.kind.value, target_id.namespace,
                                   target_id.name, ref, state)  # fmt: skip
                    previous = _find(outcome.watched, item)
                    if state is Progress.APPLIED:
                        item.seconds = (
                            previous.seconds
                            if previous is not None and previous.seconds is not None
                            else clock() - started
                        )
                    elif state is Progress.WAITING:
                        item.ready = _ready_message(raw.get((target_id.kind.value,
                                                             target_id.name)))  # fmt: skip
                    watched.append(item)
        outcome.watched = watched
        selected = [w for w in watched if w.state is not Progress.NOT_SELECTED]
        if not selected:
            outcome.code = EXIT_NONE_SELECTED
            outcome.message = "no opted-in object in scope selects the pushed artifact"
            return outcome
        if all(w.state is Progress.APPLIED for w in selected):
            return outcome
        if clock() >= deadline:
            outcome.code = EXIT_TIMEOUT
            behind = sum(1 for w in selected if w.state is Progress.WAITING)
            outcome.message = f"timed out after {wait:g}s: {behind} object(s) still behind"
            return outcome
        sleep(min(POLL, max(0.0, deadline - clock())))


def instance_name(env: dict[str, str] | None = None) -> str:
    """Who notified, for ``reportingInstance``: the CI job when there is one."""
    env = dict(os.environ) if env is None else env
    job = env.get("CI_JOB_ID")
    return f"ci-job-{job}" if job else socket.gethostname()


def _applied(cluster: Cluster, catalog: Any) -> dict[tuple[str, str, str], str | None]:
    parsed, _ = catalog.update(read_sources(cluster))
    found = {}
    for target_id, entry in parsed.items():
        applied = getattr(entry.source, "applied", None)
        found[(target_id.kind.value, target_id.namespace, target_id.name)] = (
            applied.raw if applied is not None else None
        )
    return found


def _find(items: Sequence[Watched], item: Watched) -> Watched | None:
    for other in items:
        same = (other.context, other.kind, other.namespace, other.name, other.ref)
        if same == (item.context, item.kind, item.namespace, item.name, item.ref):
            return other
    return None


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def _ready_message(obj: dict[str, Any] | None) -> str:
    status = obj.get("status") if isinstance(obj, dict) else None
    conditions = status.get("conditions") if isinstance(status, dict) else None
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            text = str(condition.get("message") or condition.get("reason") or "")
            return f"Ready={condition.get('status')}: {text}"[:300]
    return "no Ready condition yet"


def _kube_error(exc: Exception, cluster: Cluster, verb: str) -> NotifyError:
    where = f"context {cluster.context}: " if cluster.context else ""
    status = getattr(exc, "status", None)
    if status == 403:
        return NotifyError(EXIT_KUBE, f"{where}forbidden: cannot {verb} in namespace "
                           f"{cluster.namespace} (bind the Role flux-oci-trigger-notify "
                           "there: manifests/notify/role.yaml)")  # fmt: skip
    if status is not None:
        reason = getattr(exc, "reason", "") or ""
        return NotifyError(EXIT_KUBE, f"{where}cannot {verb} in namespace "
                           f"{cluster.namespace}: HTTP {status} {reason}".rstrip())  # fmt: skip
    return NotifyError(EXIT_KUBE, f"{where}the API server cannot be reached: "
                       f"{type(exc).__name__}")  # fmt: skip


def render_text(outcome: Outcome) -> str:
    lines = [
        f"notified  {s.context or 'in-cluster'}  {s.namespace}  {s.ref}  (Event {s.event})"
        for s in outcome.sent
    ]
    for w in outcome.watched:
        where = f"{w.context}  " if len({s.context for s in outcome.sent}) > 1 else ""
        state = w.state.value
        if w.state is Progress.APPLIED and w.seconds is not None:
            state += f" after {w.seconds:.1f}s"
        elif w.state is Progress.WAITING and w.ready:
            state += f"  ({w.ready})"
        lines.append(f"{where}{w.kind}/{w.namespace}/{w.name}  {w.ref.tag}  {state}")
    if outcome.message:
        lines.append(outcome.message)
    return "\n".join(lines)


def render_json(outcome: Outcome) -> str:
    import json

    doc = {
        "result": {EXIT_OK: "ok", EXIT_NONE_SELECTED: "none_selected", EXIT_TIMEOUT: "timeout"}.get(
            outcome.code, "error"
        ),
        "message": outcome.message,
        "notified": [
            {"context": s.context, "namespace": s.namespace, "ref": str(s.ref), "event": s.event}
            for s in outcome.sent
        ],
        "objects": [
            {
                "context": w.context,
                "kind": w.kind,
                "namespace": w.namespace,
                "name": w.name,
                "ref": str(w.ref),
                "state": w.state.value,
                "seconds": w.seconds,
                "ready": w.ready,
            }
            for w in outcome.watched
        ],
    }
    return json.dumps(doc, ensure_ascii=True, indent=2)
