"""The per-target metric families, rendered off the scrape path.

At ten thousand targets, building the per-target series at scrape time costs seconds of
CPU per scrape and competes with the checks. Instead a renderer thread turns the state
snapshot into exposition bytes (text format 0.0.4) once per change, at most every
``min_gap`` seconds, reusing each unchanged target's lines from the previous render,
and keeps a gzip copy; a scrape only copies bytes.

Series per target: ``flux_oci_target_info`` (1), ``flux_oci_target_state`` (one series,
the current state, value 1: ``sum by (state)`` and ``state="x" == 1`` work as before, at a
tenth of the one-hot set's size), lag, versions behind, last check, and the two request
counters. Names and labels are a public contract (dashboard, alerts).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from exporter.app.state import Snapshot, StateStore, TargetRow
from exporter.flux.targets import TargetId

TARGET_LABELS = ("kind", "namespace", "name")
FAMILIES = (
    ("flux_oci_target_info", "gauge",
     "What Flux applied and the freshest artifact it would apply (value 1). {cached}"),
    ("flux_oci_target_state", "gauge",
     "The target's current state (value 1; one series per target, labelled with its state)."),
    ("flux_oci_target_lag_seconds", "gauge",
     "How long a newer artifact has waited to be applied; 0 when up to date. {cached}"),
    ("flux_oci_target_versions_behind", "gauge",
     "Matching tags newer than the applied one (1 for a moved mutable tag). {cached}"),
    ("flux_oci_target_last_check_timestamp_seconds", "gauge",
     "Unix time of the target's last successful registry check (cache hits included)."),
    ("flux_oci_reconcile_requests_total", "counter", "Reconcile requests sent (dry-run excluded)."),
    ("flux_oci_reconcile_request_errors_total", "counter",
     "Reconcile request patches that failed."),
)  # fmt: skip
_EMPTY_GZIP = gzip.compress(b"", compresslevel=1)
SOURCES_HELP = "OCIRepository and OCI HelmRepository objects in the cluster (watched, not polled)."


def _num(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]  # Go's float format


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


@dataclass(frozen=True, slots=True)
class _Lines:
    row: TargetRow
    requests: int
    errors: int
    lines: tuple[bytes, ...]  # one entry per family, b"" when the family has no sample


def _short(revision: str) -> str:
    """``tag@sha256:<12 hex>``: a digest as people read it (the full one is in the object's
    status and in ``check``); an eighth of the series' size at ten thousand targets."""
    at = revision.find("@sha256:")
    if at < 0 or len(revision) - at < 8 + 64:
        return revision
    return revision[: at + 8 + 12]


def _render_row(row: TargetRow, requests: int, errors: int) -> tuple[bytes, ...]:
    ids = (("kind", row.id.kind.value), ("namespace", row.id.namespace), ("name", row.id.name))
    base = _labels(ids)
    info = _labels((*ids, ("url", row.url), ("rule", row.rule),
                    ("applied_revision", _short(row.applied_revision)),
                    ("latest_revision", _short(row.latest_revision))))  # fmt: skip
    state = _labels((*ids, ("state", row.state.value)))
    last = ""
    if row.last_check is not None:  # whole seconds: ten digits, not Go's 1.764e+09 form
        name = "flux_oci_target_last_check_timestamp_seconds"
        last = f"{name}{base} {int(row.last_check)}\n"
    # request counters appear with the first request (as a labelled counter's child does)
    sent = f"flux_oci_reconcile_requests_total{base} {requests}\n" if requests else ""
    failed = f"flux_oci_reconcile_request_errors_total{base} {errors}\n" if errors else ""
    lines = (
        f"flux_oci_target_info{info} 1\n",
        f"flux_oci_target_state{state} 1\n",
        f"flux_oci_target_lag_seconds{base} {_num(row.lag_seconds)}\n",
        f"flux_oci_target_versions_behind{base} {row.versions_behind}\n",
        last,
        sent,
        failed,
    )
    return tuple(line.encode() for line in lines)


class Exposition:
    def __init__(
        self,
        store: StateStore,
        tag_ttl: float,
        *,
        min_gap: float = 1.0,
        shard: str = "",
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._shard = shard
        self._leading = leading  # a standby serves none of these (no double counting)
        self._min_gap = min_gap
        cached = f"Tags are cached for {tag_ttl:g}s, so values lag the registry by up to that."
        self._headers = tuple(
            f"# HELP {name} {text.format(cached=cached)}\n# TYPE {name} {kind}\n"
            for name, kind, text in FAMILIES
        )
        self._lines: dict[TargetId, _Lines] = {}
        self._lock = threading.Lock()
        self._body: tuple[int, bytes, bytes] | None = None  # version, text, gzip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exposition", daemon=True)
        self.renders = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def body(self, *, gzipped: bool = False) -> bytes:
        """The latest rendering; the first call renders if the thread has not yet."""
        if not self._leading():
            return _EMPTY_GZIP if gzipped else b""
        with self._lock:
            current = self._body
        if current is None:
            current = self.render()
        return current[2] if gzipped else current[1]

    def render(self) -> tuple[int, bytes, bytes]:
        snapshot = self._store.snapshot()
        text = self._text(snapshot)
        rendered = (snapshot.version, text, gzip.compress(text, compresslevel=1))
        with self._lock:
            self._body = rendered
            self.renders += 1
        return rendered

    def _run(self) -> None:
        version = -1
        while not self._stop.is_set():
            version = self._store.wait_for_change(version, timeout=1.0)
            with self._lock:
                done = self._body[0] if self._body else None
            if done != version:
                started = time.perf_counter()
                version = self.render()[0]
                # at most ~5 % of a core on rendering, however large the exposition
                took = time.perf_counter() - started
                self._stop.wait(max(self._min_gap, 20 * took))

    def _text(self, snap: Snapshot) -> bytes:
        sources = [
            "flux_oci_sources"
            + _labels(
                (
                    ("kind", k),
                    ("namespace", ns),
                    ("opted_in", "true" if o else "false"),
                    ("shard", self._shard),
                )
            )
            + f" {_num(n)}\n"
            for (k, ns, o), n in sorted(snap.sources.items())
        ]
        families: list[list[bytes]] = [[h.encode()] for h in self._headers]
        fresh: dict[TargetId, _Lines] = {}
        for row in snap.targets:
            requests = snap.requests.get(row.id, 0)
            errors = snap.request_errors.get(row.id, 0)
            known = self._lines.get(row.id)
            if known is None or known.row is not row or (known.requests, known.errors) != (
                requests, errors,
            ):  # fmt: skip
                known = _Lines(row, requests, errors, _render_row(row, requests, errors))
            fresh[row.id] = known
            for family, line in zip(families, known.lines, strict=True):
                if line:
                    family.append(line)
        self._lines = fresh
        head = f"# HELP flux_oci_sources {SOURCES_HELP}\n# TYPE flux_oci_sources gauge\n"
        return (head + "".join(sources)).encode() + b"".join(b"".join(f) for f in families)
