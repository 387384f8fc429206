"""The exporter registers exactly the metric families the dashboard and alerts rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporter.metrics import Metrics
from exporter.state import StateStore
from exporter.tagcache import CacheStats
from tests.ops.exposition import CONTRACT


def test_exporter_families_match_the_contract() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.attach(StateStore(), lambda: CacheStats(requests=0, hits=0, fetches=0), 60.0)
    exported = {
        family.name: family.type
        for family in metrics.registry.collect()
        if family.name.startswith("flux_oci_")
    }
    promised = {name.removesuffix("_total"): kind for name, (kind, _) in CONTRACT.items()}
    assert exported == promised
