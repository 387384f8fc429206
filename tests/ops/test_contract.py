"""The exporter registers exactly the metric families the dashboard and alerts rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.exposition import Exposition
from exporter.app.state import StateStore
from exporter.metrics import Metrics
from exporter.registry.cache import CacheStats
from tests.ops.exposition import CONTRACT


def test_exporter_families_match_the_contract() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.attach(lambda: CacheStats(requests=0, hits=0, fetches=0))
    rendered = Exposition(StateStore(), 60.0).render()[1].decode()
    exported = {
        family.name: family.type
        for family in metrics.registry.collect()
        if family.name.startswith("flux_oci_")
    }
    exported |= {f.name: f.type for f in text_string_to_metric_families(rendered)}
    promised = {name.removesuffix("_total"): kind for name, (kind, _) in CONTRACT.items()}
    assert exported == promised
