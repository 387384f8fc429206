"""The per-target metric families, rendered off the scrape path.

At ten thousand targets, building the per-target series at scrape time costs seconds of
CPU per scrape and competes with the checks. Instead a renderer thread turns the state
snapshot into exposition bytes, in each format /metrics offers (text 0.0.4 and
OpenMetrics 1.0.0), once per change, at most every ``min_gap`` seconds and within 5 % of
a core over time (with a few seconds' burst once, when the first full pass is done, so
that /metrics then shows every target at once), and keeps a gzip copy of each; a scrape only
copies bytes. prometheus_client writes every line: the samples of a family that changed
since the last render (a check usually moves only the last check's time) go through its
``generate_latest`` together, and a line is kept only in its family's block (all the
targets' lines of that family, in order, with where each ends), which a render that
touches the family builds again from the old block's lines and the new ones; each family
follows its header (written by the library, once). Lines are not kept per target as
well: at ten thousand targets that copy weighed 10 MB. OpenMetrics' closing ``# EOF`` is
left to the part served last.

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
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

_Sample = tuple[tuple[str, ...], float]  # one target's sample in a family: labels, value


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
class _Block:
    """One family's lines of every target in one format, in target order: the bytes sent,
    their gzip member, and where each target's line ends (a target without a sample of
    the family has an empty line). The lines are kept only here, once."""

    plain: bytes
    zipped: bytes
    ends: array[int]

    def line(self, at: int) -> bytes:
        return self.plain[self.ends[at - 1] if at else 0 : self.ends[at]]


def _same_targets(before: Sequence[TargetRow], now: Sequence[TargetRow]) -> bool:
    return len(before) == len(now) and all(a.id == b.id for a, b in zip(before, now, strict=True))


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def _short(revision: str) -> str:
    """``tag@sha256:<12 hex>``: a digest as people read it (the full one is in the object's
    status and in ``check``); an eighth of the series' size at ten thousand targets."""
    at = revision.find("@sha256:")
    if at < 0 or len(revision) - at < 8 + 64:
        return revision
    return revision[: at + 8 + 12]


def _sample(index: int, row: TargetRow, requests: int, errors: int) -> _Sample | None:
    """The target's sample in family ``index`` (the order of FAMILIES); None: none."""
    ids = (row.id.kind.value, row.id.namespace, row.id.name)
    if index == 0:
        applied, latest = _short(row.applied_revision), _short(row.latest_revision)
        return (*ids, row.url, row.rule, applied, latest), 1.0
    if index == 1:
        return (*ids, row.state.value), 1.0
    if index == 2:
        return ids, round(row.lag_seconds, 3)  # milliseconds: the rest is noise, and bytes
    if index == 3:
        return ids, float(row.versions_behind)
    if index == 4:  # whole seconds: the check's time is known to the second
        return None if row.last_check is None else (ids, float(int(row.last_check)))
    # the request and request-error counters appear together with the first attempt, so
    # a rate over the errors sees the first failure (a series starting at 1 does not)
    if not requests and not errors:
        return None
    return ids, float(requests if index == 5 else errors)


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
        rendered: Callable[[], object] = lambda: None,
    ) -> None:
        self._store = store
        self._rendered_hook = rendered  # after each render of the thread's (memory upkeep)
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
        # the snapshot last rendered, and each family's block of lines (per format): a
        # block is built again only when one of its lines changed or the targets did
        self._shown: Snapshot | None = None
        self._blocks: list[tuple[_Block, ...]] = []
        self._lock = threading.Lock()
        self._rendering_lock = threading.Lock()  # guards _shown and _blocks
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
            self._rendered_hook()
            credit -= time.perf_counter() - started
            rendered_at = time.monotonic()

    def _rendered(self, snap: Snapshot) -> Rendering:
        shown = self._shown
        was: Sequence[int]  # each target's place in the last render; -1: new
        if shown is not None and _same_targets(shown.targets, snap.targets):
            was, reorder = range(len(snap.targets)), False  # the usual case: no copy
        else:
            before = {row.id: at for at, row in enumerate(shown.targets)} if shown else {}
            was, reorder = [before.get(row.id, -1) for row in snap.targets], True
            del before
        changed = [at for at, row in enumerate(snap.targets) if not self._same(row, was[at], snap)]
        blocks = [self._block(index, snap, changed, was, reorder) for index in range(len(FAMILIES))]
        self._shown, self._blocks = snap, blocks
        parts: dict[Format, tuple[bytes, ...]] = {}
        zipped: dict[Format, tuple[bytes, ...]] = {}
        for f, fmt in enumerate(FORMATS):
            sources = self._sources(fmt, snap)
            plain, packed = [sources], [_gzip(sources)]
            for index, block in enumerate(blocks):
                plain += (self._headers[fmt][index], block[f].plain)
                packed += (self._zipped_headers[fmt][index], block[f].zipped)
            parts[fmt] = tuple(p for p in plain if p)
            zipped[fmt] = tuple(z for p, z in zip(plain, packed, strict=True) if p)
        return Rendering(snap.version, parts, zipped)

    def _same(self, row: TargetRow, place: int, snap: Snapshot) -> bool:
        """Whether the target is as last rendered: the same row, the same counters."""
        shown = self._shown
        if shown is None or place < 0 or shown.targets[place] is not row:
            return False
        counts = (snap.requests.get(row.id, 0), snap.request_errors.get(row.id, 0))
        return counts == (shown.requests.get(row.id, 0), shown.request_errors.get(row.id, 0))

    def _block(
        self, index: int, snap: Snapshot, changed: list[int], was: Sequence[int], reorder: bool
    ) -> tuple[_Block, ...]:
        """Family ``index``'s block in every format, for the targets in their new order:
        the lines whose sample changed written anew, every other taken from the last
        block; the last block itself when no line changed and no target came or went."""
        old = self._blocks[index] if self._blocks else None
        fresh = self._lines(index, snap, changed, was)
        if old is not None and not reorder and not fresh[0]:
            return old
        built: list[_Block] = []
        for f in range(len(FORMATS)):
            if built and (old is None or old[f] is old[0]) and fresh[f] == fresh[0]:
                built.append(built[0])  # written alike in both formats: one block
                continue
            lines = fresh[f]
            pieces = [
                lines[at] if at in lines else old[f].line(place) if old and place >= 0 else b""
                for at, place in enumerate(was)
            ]
            plain = b"".join(pieces)
            if built and plain == built[0].plain:
                built.append(built[0])
                continue
            ends = array("Q", accumulate(map(len, pieces)))
            built.append(_Block(plain, _gzip(plain) if plain else b"", ends))
        return tuple(built)

    def _lines(
        self, index: int, snap: Snapshot, changed: list[int], was: Sequence[int]
    ) -> list[dict[int, bytes]]:
        """Per format, the new line in family ``index`` of each changed target whose sample
        changed, by its place (b"": its sample is gone). The library writes them ``CHUNK``
        samples at a time; a line written the same in both formats is kept once."""
        shown = self._shown
        found: list[dict[int, bytes]] = [{} for _ in FORMATS]
        pending: list[tuple[int, _Sample]] = []
        for at in changed:
            row = snap.targets[at]
            new = _sample(index, row, snap.requests.get(row.id, 0),
                          snap.request_errors.get(row.id, 0))  # fmt: skip
            old = None
            if shown is not None and was[at] >= 0:
                known = shown.targets[was[at]]
                old = _sample(index, known, shown.requests.get(row.id, 0),
                              shown.request_errors.get(row.id, 0))  # fmt: skip
            if new == old:
                continue
            if new is None:
                for lines in found:
                    lines[at] = b""
                continue
            pending.append((at, new))
            if len(pending) == CHUNK:
                self._write(index, pending, found)
                pending.clear()
        if pending:
            self._write(index, pending, found)
        return found

    def _write(
        self, index: int, samples: list[tuple[int, _Sample]], found: list[dict[int, bytes]]
    ) -> None:
        """One library call per format for ``samples`` of family ``index``; their lines
        go to ``found`` by place."""
        family = _family(index, self._help[index])
        for _, sample in samples:
            family.add_metric(*sample)
        for f, fmt in enumerate(FORMATS):
            text = fmt.render(_Families([family]))
            # a sample line never starts with "#", and the library escapes every line
            # break in a label value: the lines come back in the order given
            written = [ln + b"\n" for ln in text.split(b"\n") if ln and ln[0] != 35]
            if len(written) != len(samples):
                raise RuntimeError(f"{fmt.value}: {len(written)} lines for {len(samples)}")
            for (at, _), line in zip(samples, written, strict=True):
                first = found[0].get(at) if f else None
                found[f][at] = first if first == line and first is not None else line

    def _sources(self, fmt: Format, snap: Snapshot) -> bytes:
        family = GaugeMetricFamily("flux_oci_sources", SOURCES_HELP, labels=SOURCES_LABELS)
        for (kind, namespace, opted_in), count in sorted(snap.sources.items()):
            family.add_metric(
                (kind, namespace, "true" if opted_in else "false", self._shard), count
            )
        return _without_trailer(fmt, fmt.render(_Families([family])))
