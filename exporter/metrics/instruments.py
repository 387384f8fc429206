"""Prometheus metrics: per-target series rendered from one snapshot, plus self-instrumentation.

Per-target series (info, state, lag, versions behind, last check, request counters) are
rendered from the state snapshot by ``exporter.metrics.exposition``, off the scrape path.
Everything here (registry traffic, latency histograms, check errors, Kubernetes calls,
the tag cache) uses prometheus_client's own types on an injected registry. Names are a
public contract (dashboard, alerts).
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
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.model import Delivery, ErrorReason, EventResult
from exporter.registry.cache import CacheStats

# what a failed check is counted under, each exported from 0: its target's ErrorReason, or
# "kubernetes", kept in the exported set (dashboards may name it) though no check reports it
CHECK_ERROR_REASONS: tuple[str, ...] = (
    *(r.value for r in ErrorReason if r is not ErrorReason.INTERNAL),
    "kubernetes",
    ErrorReason.INTERNAL.value,
)
REQUEST_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
LEAD_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
EVENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
REGISTRY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# request results exported from 0 once a registry is first contacted: no answer ("error",
# the registry errors alert) and rate limited (429, beside flux_oci_registry_rate_limited)
REGISTRY_CODES_FROM_ZERO = ("error", "429")


class _CacheCollector(Collector):
    """The tag cache's counters, read when scraped (three integers)."""

    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        requests = CounterMetricFamily(
            "flux_oci_tag_cache_requests", "Tag listings asked of the tag cache."
        )
        requests.add_metric((), stats.requests)
        hits = CounterMetricFamily(
            "flux_oci_tag_cache_hits", "Tag listings answered from the cache."
        )
        hits.add_metric((), stats.hits)
        return [requests, hits]


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
        self.leader = Gauge(
            "flux_oci_leader",
            "1 on the replica that leads (or when leader election is off), 0 on a standby: "
            "only the leader requests, writes Events and exports per-target series.",
            registry=r,
        )
        self.leader.set(1)
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

        self.events_received = Counter(
            "flux_oci_events_received",
            "Push events received (hooks on the events listener; source kubernetes: notify "
            "through the API server), by source and what became of them.",
            ["source", "result"],
            registry=r,
        )
        self.event_to_request_seconds = Histogram(
            "flux_oci_event_to_request_seconds",
            "From a push event received to the reconcile request it led to being sent.",
            buckets=EVENT_BUCKETS,
            registry=r,
        )
        self.flux_events = Counter(
            "flux_oci_flux_events",
            "Events posted to Flux's notification-controller (--events-addr), by result: sent, "
            "duplicate (HTTP 429: it drops a repeat), failed (after retries), dropped (the "
            "queue was full).",
            ["result"],
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

    def events_enabled(self, sources: Iterable[str]) -> None:
        """Export the events counters from 0 for every source that is on."""
        for source in sources:
            for result in EventResult:
                self.events_received.labels(source, result)

    def flux_events_enabled(self) -> None:
        """Export the Flux events counters from 0 (only when --events-addr is set)."""
        for result in Delivery:
            self.flux_events.labels(result)

    def kube_resources(self, resources: Iterable[str]) -> None:
        """Export the Kubernetes counters from 0 for every resource watched."""
        for resource in resources:
            self.kube_lists.labels(resource)
            self.kube_errors.labels(resource)

    def attach(self, cache_stats: Callable[[], CacheStats]) -> None:
        self.registry.register(_CacheCollector(cache_stats))

    # CheckObserver: push events
    def event_received(self, source: str, result: EventResult) -> None:
        self.events_received.labels(source, result).inc()

    def event_to_request(self, seconds: float) -> None:
        self.event_to_request_seconds.observe(seconds)

    # FluxEventsObserver
    def flux_event(self, result: Delivery) -> None:
        self.flux_events.labels(result).inc()

    # CheckObserver
    def check_failed(self, reason: ErrorReason) -> None:
        self.check_errors.labels(reason).inc()

    def applied(self, kind: str, after_request: float | None, after_seen: float | None) -> None:
        if after_request is not None:
            self.request_to_applied.labels(kind).observe(after_request)
        if after_seen is not None:
            self.artifact_to_applied.labels(kind).observe(after_seen)

    # RegistryObserver (and ContactObserver)
    def registry_contacted(self, registry: str) -> None:
        """Export the registry's failure counters from 0 before its first request, so that
        rate() and the alerts on them see the first failure too."""
        for code in REGISTRY_CODES_FROM_ZERO:
            self.registry_requests.labels(registry, code)
        self.registry_rate_limited.labels(registry)

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
