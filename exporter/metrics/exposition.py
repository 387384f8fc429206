"""The per-target metric families, rendered off the scrape path.

At ten thousand targets, building the per-target series at scrape time costs seconds of
CPU per scrape and competes with the checks. Instead a renderer thread turns the state
snapshot into exposition bytes, in each format /metrics offers (text 0.0.4 and
OpenMetrics 1.0.0), once per change, at most every ``min_gap`` seconds and within 5 % of
a core over time (with a few seconds' burst once, when the first full pass is done, so
that /metrics then shows every target at once), and keeps a gzip copy of each; a scrape only
copies bytes. prometheus_client writes every line: the samples that changed since the last
render (a check usually moves only the last check's time) go through its
``generate_latest`` together, one family per metric name, and each target keeps its
lines until they change; a render assembles each family's header (written by the
library, once) and the targets' lines. OpenMetrics' closing ``# EOF`` is left to the
part served last.

Series per target: ``flux_oci_target_info`` (1), ``flux_oci_target_state`` (one series,
the current state, value 1: ``sum by (state)`` and ``state="x" == 1`` work as before, at a
tenth of the one-hot set's size), lag (milliseconds), versions behind, last check (whole
seconds), and the two request counters. Names and labels are a public contract
(dashboard, alerts).
"""

from __future__ import annotations

import gzip
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.flux.targets import TargetId
from exporter.state import Snapshot, StateStore, TargetRow
from exporter.web.endpoints import Format

TARGET_LABELS = ("kind", "namespace", "name")
INFO_LABELS = (*TARGET_LABELS, "url", "rule", "applied_revision", "latest_revision")
# name (counters without ``_total``: the library adds it where the format wants it),
# type, labels, help
FAMILIES = (
    ("flux_oci_target_info", "gauge", INFO_LABELS,
     "What Flux applied and the freshest artifact it would apply (value 1). {cached}"),
    ("flux_oci_target_state", "gauge", (*TARGET_LABELS, "state"),
     "The target's current state (value 1; one series per target, labelled with its state)."),
    ("flux_oci_target_lag_seconds", "gauge", TARGET_LABELS,
     "How long a newer artifact has waited to be applied; 0 when up to date. {cached}"),
    ("flux_oci_target_versions_behind", "gauge", TARGET_LABELS,
     "Matching tags newer than the applied one (1 for a moved mutable tag). {cached}"),
    ("flux_oci_target_last_check_timestamp_seconds", "gauge", TARGET_LABELS,
     "Unix time of the target's last successful registry check (cache hits included)."),
    ("flux_oci_reconcile_requests", "counter", TARGET_LABELS,
     "Reconcile requests sent (dry-run excluded)."),
    ("flux_oci_reconcile_request_errors", "counter", TARGET_LABELS,
     "Reconcile request patches that failed."),
)  # fmt: skip
SOURCES_LABELS = ("kind", "namespace", "opted_in", "shard")
SOURCES_HELP = "OCIRepository and OCI HelmRepository objects in the cluster (watched, not polled)."
CHUNK = 2048  # targets rendered per library call: bounds the transient text
SHARE = 0.05  # of a core, at most, spent rendering over time
BURST = 3.0  # seconds of rendering allowed at once, when the first full pass is done
FORMATS = tuple(Format)
_NO_LINES = tuple((b"",) * len(FAMILIES) for _ in Format)

# one target's samples: per family, its label values and value (None: no sample)
_Values = tuple[tuple[tuple[str, ...], float] | None, ...]
_NO_VALUES: _Values = (None,) * len(FAMILIES)


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _family(index: int, help_text: str) -> GaugeMetricFamily | CounterMetricFamily:
    name, kind, labels, _ = FAMILIES[index]
    if kind == "counter":
        return CounterMetricFamily(name, help_text, labels=labels)
    return GaugeMetricFamily(name, help_text, labels=labels)


def _without_trailer(fmt: Format, text: bytes) -> bytes:
    if not text.endswith(fmt.trailer):
        raise RuntimeError(f"{fmt.value} exposition does not end as expected")
    return text[: len(text) - len(fmt.trailer)]


@dataclass(frozen=True, slots=True)
class _Lines:
    row: TargetRow
    requests: int
    errors: int
    lines: tuple[tuple[bytes, ...], ...]  # per format (FORMATS), per family; b"": no sample


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def _block(
    ordered: list[tuple[tuple[bytes, ...], ...]], index: int
) -> tuple[tuple[bytes, bytes], ...]:
    """One family's lines of every target, plain and gzipped, per format; one block for
    the formats when every line is shared."""
    built: list[tuple[bytes, bytes]] = []
    for f in range(len(FORMATS)):
        if built and all(lines[f][index] is lines[0][index] for lines in ordered):
            built.append(built[0])  # every line shared with the first format
            continue
        block = b"".join([lines[f][index] for lines in ordered])
        built.append((block, _gzip(block) if block else b""))
    return tuple(built)


def _short(revision: str) -> str:
    """``tag@sha256:<12 hex>``: a digest as people read it (the full one is in the object's
    status and in ``check``); an eighth of the series' size at ten thousand targets."""
    at = revision.find("@sha256:")
    if at < 0 or len(revision) - at < 8 + 64:
        return revision
    return revision[: at + 8 + 12]


def _values(row: TargetRow, requests: int, errors: int) -> _Values:
    ids = (row.id.kind.value, row.id.namespace, row.id.name)
    info = (*ids, row.url, row.rule, _short(row.applied_revision), _short(row.latest_revision))
    return (
        (info, 1.0),
        ((*ids, row.state.value), 1.0),
        (ids, round(row.lag_seconds, 3)),  # milliseconds: the rest is noise, and bytes
        (ids, float(row.versions_behind)),
        # whole seconds: the check's time is known to the second
        None if row.last_check is None else (ids, float(int(row.last_check))),
        # the request and request-error counters appear together with the first attempt,
        # so a rate over the errors sees the first failure (a series starting at 1 does not)
        (ids, float(requests)) if requests or errors else None,
        (ids, float(errors)) if requests or errors else None,
    )


@dataclass(frozen=True, slots=True)
class Rendering:
    """One render of a snapshot: the per-target part of /metrics in every format, as
    parts to send one after the other (a family's lines written alike in both formats
    are one part, shared), plain and gzipped (a gzip member per part: members one after
    the other make one gzip stream)."""

    version: int  # the snapshot's
    parts: dict[Format, tuple[bytes, ...]]
    zipped: dict[Format, tuple[bytes, ...]]

    def text(self, fmt: Format) -> bytes:
        return b"".join(self.parts[fmt])


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
        self._help = tuple(text.format(cached=cached) for *_, text in FAMILIES)
        # each family's HELP and TYPE lines, as the library writes them for a family
        # without samples
        self._headers = {
            fmt: tuple(
                _without_trailer(fmt, fmt.render(_Families([_family(i, h)])))
                for i, h in enumerate(self._help)
            )
            for fmt in Format
        }
        self._zipped_headers = {
            fmt: tuple(_gzip(h) for h in headers) for fmt, headers in self._headers.items()
        }
        self._lines: dict[TargetId, _Lines] = {}
        # the targets in the last render's order, and each family's block of lines (plain
        # and gzipped, per format): a block is built again only when one of its lines
        # changed or the targets did
        self._order: tuple[TargetId, ...] = ()
        self._blocks: list[tuple[tuple[bytes, bytes], ...]] = []
        self._lock = threading.Lock()
        self._rendering_lock = threading.Lock()  # guards _lines, _order and _blocks
        self._rendering: Rendering | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exposition", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def body(self, fmt: Format = Format.TEXT, gzipped: bool = False) -> tuple[bytes, ...]:
        """The latest rendering, as parts; the first call renders if the thread has not."""
        if not self._leading():
            return ()
        with self._lock:
            current = self._rendering
        if current is None:
            current = self.render()
        return current.zipped[fmt] if gzipped else current.parts[fmt]

    def render(self) -> Rendering:
        with self._rendering_lock:  # the thread and a first scrape: one at a time
            snapshot = self._store.snapshot()
            rendering = self._rendered(snapshot)
        with self._lock:
            self._rendering = rendering
        return rendering

    def _run(self) -> None:
        # at most SHARE of a core on rendering over time, however large the exposition: a
        # render spends credit, and the debt is paid back at SHARE of the time passed
        # before the next. Once, when the first full pass is done, BURST seconds are
        # granted, so that /metrics shows every target right after it without having
        # slowed it down; later bursts (a wave of checks) would slow scrapes and checks.
        credit, at, caught_up, rendered_at = 0.0, time.monotonic(), False, -math.inf
        version = -1
        while not self._stop.is_set():
            version = self._store.wait_for_change(version, timeout=1.0)
            now = time.monotonic()
            if credit < 0:
                credit = min(0.0, credit + SHARE * (now - at))
            at = now
            if not caught_up and self._store.passes > 0:
                credit, caught_up = BURST, True
            with self._lock:
                done = self._rendering.version if self._rendering else None
            if done == version:
                continue
            if credit < 0 or now - rendered_at < self._min_gap:
                self._stop.wait(0.1)
                continue
            started = time.perf_counter()
            version = self.render().version
            credit -= time.perf_counter() - started
            rendered_at = time.monotonic()

    def _rendered(self, snap: Snapshot) -> Rendering:
        fresh: dict[TargetId, _Lines] = {}
        changed: list[tuple[TargetRow, int, int]] = []
        for row in snap.targets:
            requests = snap.requests.get(row.id, 0)
            errors = snap.request_errors.get(row.id, 0)
            known = self._lines.get(row.id)
            if known is None or known.row is not row or (known.requests, known.errors) != (
                requests, errors,
            ):  # fmt: skip
                changed.append((row, requests, errors))
            else:
                fresh[row.id] = known
        touched: set[int] = set()  # the families with a line that changed
        for start in range(0, len(changed), CHUNK):
            for done in self._render(changed[start : start + CHUNK], touched):
                fresh[done.row.id] = done
        self._lines = fresh
        order = tuple(row.id for row in snap.targets)
        if order != self._order or not self._blocks:
            touched = set(range(len(FAMILIES)))
        self._order = order
        ordered = [fresh[row.id].lines for row in snap.targets]
        blocks = [
            _block(ordered, index) if index in touched else self._blocks[index]
            for index in range(len(FAMILIES))
        ]
        self._blocks = blocks
        parts: dict[Format, tuple[bytes, ...]] = {}
        zipped: dict[Format, tuple[bytes, ...]] = {}
        for f, fmt in enumerate(FORMATS):
            sources = self._sources(fmt, snap)
            plain, packed = [sources], [_gzip(sources)]
            for index, block in enumerate(blocks):
                plain += (self._headers[fmt][index], block[f][0])
                packed += (self._zipped_headers[fmt][index], block[f][1])
            parts[fmt] = tuple(p for p in plain if p)
            zipped[fmt] = tuple(z for p, z in zip(plain, packed, strict=True) if p)
        return Rendering(snap.version, parts, zipped)

    def _render(self, changed: list[tuple[TargetRow, int, int]], touched: set[int]) -> list[_Lines]:
        """New lines for the samples whose values changed (a check usually moves only the
        last check's time), from one library call per format: each family holds those
        samples of every target, in target order. Adds the families changed to
        ``touched``."""
        families = [_family(i, h) for i, h in enumerate(self._help)]
        slots: list[list[int]] = [[] for _ in FAMILIES]  # per family: whose sample, in order
        redo: list[list[int]] = []  # per target: the families whose line changes
        kept: list[tuple[tuple[bytes, ...], ...]] = []  # per target: its lines so far
        for at, (row, requests, errors) in enumerate(changed):
            before = self._lines.get(row.id)
            if before is None:
                old, lines = _NO_VALUES, _NO_LINES
            else:  # recomputed rather than kept: ten thousand of them weigh megabytes
                old, lines = _values(before.row, before.requests, before.errors), before.lines
            kept.append(lines)
            redo.append([])
            new = _values(row, requests, errors)
            for index, (sample, was) in enumerate(zip(new, old, strict=True)):
                if sample == was:
                    continue
                redo[at].append(index)
                touched.add(index)
                if sample is not None:
                    families[index].add_metric(*sample)
                    slots[index].append(at)
        order = [(at, index) for index, owned in enumerate(slots) for at in owned]
        rendered: list[list[list[bytes]]] = []  # per format, per target, per family
        for f, fmt in enumerate(FORMATS):
            split = [list(lines[f]) for lines in kept]
            for at, indexes in enumerate(redo):
                for index in indexes:
                    split[at][index] = b""  # gone, unless a new line comes below
            if order:
                text = fmt.render(_Families(families))
                # a sample line never starts with "#", and the library escapes every
                # line break in a label value: the lines come back in the order given
                found = [ln + b"\n" for ln in text.split(b"\n") if ln and ln[0] != 35]
                if len(found) != len(order):
                    raise RuntimeError(f"{fmt.value}: {len(found)} lines for {len(order)}")
                for (at, index), line in zip(order, found, strict=True):
                    # a line written the same in an earlier format is kept once
                    same = rendered[0][at][index] if rendered else None
                    split[at][index] = same if same == line and same is not None else line
            rendered.append(split)
        return [
            _Lines(row, requests, errors, tuple(tuple(per[at]) for per in rendered))
            for at, (row, requests, errors) in enumerate(changed)
        ]

    def _sources(self, fmt: Format, snap: Snapshot) -> bytes:
        family = GaugeMetricFamily("flux_oci_sources", SOURCES_HELP, labels=SOURCES_LABELS)
        for (kind, namespace, opted_in), count in sorted(snap.sources.items()):
            family.add_metric(
                (kind, namespace, "true" if opted_in else "false", self._shard), count
            )
        return _without_trailer(fmt, fmt.render(_Families([family])))
