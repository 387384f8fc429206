"""Prometheus metrics: per-target series rendered from one snapshot, plus self-instrumentation.

Per-target series (info, state, lag, versions behind, last check, request counters) come
from a custom collector over ``StateStore.snapshot()``: a scrape copies the state under a
lock and does no I/O, and a target that disappears takes its series with it. Everything
else (registry traffic, latency histograms, check errors) uses prometheus_client's own
types on an injected registry. Names are a public contract (dashboard, alerts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.state import StateStore
from exporter.tagcache import CacheStats
from exporter.targets import State

CHECK_ERROR_REASONS = (
    "auth", "not_found", "rate_limited", "unavailable", "protocol", "config", "unsupported",
    "kubernetes",
)  # fmt: skip
TARGET_LABELS = ("kind", "namespace", "name")
REQUEST_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
LEAD_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
REGISTRY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TargetCollector(Collector):
    def __init__(
        self, store: StateStore, cache_stats: Callable[[], CacheStats], tag_ttl: float
    ) -> None:
        self._store = store
        self._cache_stats = cache_stats
        self._ttl = tag_ttl

    def collect(self) -> Iterable[Metric]:
        snap = self._store.snapshot()
        cached = f"Tags are cached for {self._ttl:g}s, so values lag the registry by up to that."
        sources = GaugeMetricFamily(
            "flux_oci_sources",
            "OCIRepository and OCI HelmRepository objects in the cluster (watched, not polled).",
            labels=("kind", "namespace", "opted_in"),
        )
        for (kind, namespace, opted_in), n in sorted(snap.sources.items()):
            sources.add_metric((kind, namespace, "true" if opted_in else "false"), n)
        info = GaugeMetricFamily(
            "flux_oci_target_info",
            f"What Flux applied and the freshest artifact it would apply (value 1). {cached}",
            labels=(*TARGET_LABELS, "url", "rule", "applied_revision", "latest_revision"),
        )
        state = GaugeMetricFamily(
            "flux_oci_target_state",
            "1 for the target's current state, 0 for the others.",
            labels=(*TARGET_LABELS, "state"),
        )
        lag = GaugeMetricFamily(
            "flux_oci_target_lag_seconds",
            f"How long a newer artifact has waited to be applied; 0 when up to date. {cached}",
            labels=TARGET_LABELS,
        )
        behind = GaugeMetricFamily(
            "flux_oci_target_versions_behind",
            f"Matching tags newer than the applied one (1 for a moved mutable tag). {cached}",
            labels=TARGET_LABELS,
        )
        last = GaugeMetricFamily(
            "flux_oci_target_last_check_timestamp_seconds",
            "Unix time of the target's last successful registry check (cache hits included).",
            labels=TARGET_LABELS,
        )
        for row in snap.targets:
            ids = (str(row.id.kind), row.id.namespace, row.id.name)
            info.add_metric((*ids, row.url, row.rule, row.applied_revision, row.latest_revision), 1)
            for s in State:
                state.add_metric((*ids, s.value), 1 if row.state is s else 0)
            lag.add_metric(ids, row.lag_seconds)
            behind.add_metric(ids, row.versions_behind)
            if row.last_check is not None:
                last.add_metric(ids, row.last_check)
        requests = CounterMetricFamily(
            "flux_oci_reconcile_requests",
            "Reconcile requests sent (dry-run excluded).",
            labels=TARGET_LABELS,
        )
        errors = CounterMetricFamily(
            "flux_oci_reconcile_request_errors",
            "Reconcile request patches that failed.",
            labels=TARGET_LABELS,
        )
        for row in snap.targets:
            ids = (str(row.id.kind), row.id.namespace, row.id.name)
            requests.add_metric(ids, snap.requests.get(row.id, 0))
            errors.add_metric(ids, snap.request_errors.get(row.id, 0))
        stats = self._cache_stats()
        cache_requests = CounterMetricFamily(
            "flux_oci_tag_cache_requests", "Tag listings asked of the tag cache."
        )
        cache_requests.add_metric((), stats.requests)
        cache_hits = CounterMetricFamily(
            "flux_oci_tag_cache_hits", "Tag listings answered from the cache."
        )
        cache_hits.add_metric((), stats.hits)
        return [sources, info, state, lag, behind, last, requests, errors,
                cache_requests, cache_hits]  # fmt: skip


class Metrics:
    """All of the exporter's metrics on one registry; also the registry client's observer."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        r.register(PROCESS_COLLECTOR)
        r.register(PLATFORM_COLLECTOR)
        self.build_info = Gauge(
            "flux_oci_build_info", "The exporter's version (value 1).", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self.check_errors = Counter(
            "flux_oci_check_errors", "Failed target checks by reason.", ["reason"], registry=r
        )
        for reason in CHECK_ERROR_REASONS:
            self.check_errors.labels(reason)
        self.registry_requests = Counter(
            "flux_oci_registry_requests",
            'HTTP requests to registries by status code ("error": no HTTP answer).',
            ["registry", "code"],
            registry=r,
        )
        self.registry_duration = Histogram(
            "flux_oci_registry_request_duration_seconds",
            "Registry request duration.",
            ["registry"],
            buckets=REGISTRY_BUCKETS,
            registry=r,
        )
        self.registry_rate_limited = Counter(
            "flux_oci_registry_rate_limited", "HTTP 429 answers received.", ["registry"],
            registry=r,
        )  # fmt: skip
        self.request_to_applied = Histogram(
            "flux_oci_request_to_applied_seconds",
            "From our reconcile request to Flux applying the requested revision.",
            ["kind"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.artifact_to_applied = Histogram(
            "flux_oci_artifact_to_applied_seconds",
            "From a new artifact being first seen (or created) to Flux applying it.",
            ["kind"],
            buckets=LEAD_BUCKETS,
            registry=r,
        )

        self.kube_lists = Counter(
            "flux_oci_kube_lists",
            "LIST calls to the Kubernetes API server: one per resource at start, then one per "
            "expired watch (HTTP 410).",
            ["resource"],
            registry=r,
        )
        self.kube_errors = Counter(
            "flux_oci_kube_api_errors",
            "Failed LIST or WATCH calls to the Kubernetes API server; each is retried with "
            "back-off (1 s doubling to 60 s).",
            ["resource"],
            registry=r,
        )

    def kube_resources(self, resources: Iterable[str]) -> None:
        """Export the Kubernetes counters from 0 for every resource watched."""
        for resource in resources:
            self.kube_lists.labels(resource)
            self.kube_errors.labels(resource)

    def attach(self, store: StateStore, cache_stats: Callable[[], CacheStats], ttl: float) -> None:
        self.registry.register(TargetCollector(store, cache_stats, ttl))

    # RegistryObserver
    def request(self, registry: str, code: str, seconds: float) -> None:
        self.registry_requests.labels(registry, code).inc()
        self.registry_duration.labels(registry).observe(seconds)

    def rate_limited(self, registry: str) -> None:
        self.registry_rate_limited.labels(registry).inc()

    # KubeObserver
    def kube_listed(self, resource: str) -> None:
        self.kube_lists.labels(resource).inc()

    def kube_failed(self, resource: str) -> None:
        self.kube_errors.labels(resource).inc()
