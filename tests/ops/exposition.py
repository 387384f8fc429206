"""The metric contract the dashboard and alerts are written against, and a sample of it.

``CONTRACT`` lists every exported family (name, type, labels) as the README promises it.
``exposition`` renders a plausible scrape of all of them: counters grow with each scrape,
so rate() and histogram_quantile() return data once Prometheus has a few samples.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.metrics.instruments import CHECK_ERROR_REASONS

JOB = "flux-oci-trigger"
TARGET = ("kind", "namespace", "name")

CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    "flux_oci_sources": ("gauge", ("kind", "namespace", "opted_in", "shard")),
    "flux_oci_target_info": (
        "gauge",
        (*TARGET, "url", "rule", "applied_revision", "latest_revision"),
    ),
    "flux_oci_target_state": ("gauge", (*TARGET, "state")),
    "flux_oci_target_lag_seconds": ("gauge", TARGET),
    "flux_oci_target_versions_behind": ("gauge", TARGET),
    "flux_oci_target_last_check_timestamp_seconds": ("gauge", TARGET),
    "flux_oci_reconcile_requests_total": ("counter", TARGET),
    "flux_oci_reconcile_request_errors_total": ("counter", TARGET),
    "flux_oci_request_to_applied_seconds": ("histogram", ("kind",)),
    "flux_oci_artifact_to_applied_seconds": ("histogram", ("kind",)),
    "flux_oci_check_errors_total": ("counter", ("reason",)),
    "flux_oci_registry_requests_total": ("counter", ("registry", "code")),
    "flux_oci_registry_request_duration_seconds": ("histogram", ("registry",)),
    "flux_oci_registry_rate_limited_total": ("counter", ("registry",)),
    "flux_oci_tag_cache_requests_total": ("counter", ()),
    "flux_oci_tag_cache_hits_total": ("counter", ()),
    "flux_oci_build_info": ("gauge", ("version",)),
    "flux_oci_leader": ("gauge", ()),
    "flux_oci_kube_lists_total": ("counter", ("resource",)),
    "flux_oci_kube_api_errors_total": ("counter", ("resource",)),
    "flux_oci_events_received_total": ("counter", ("source", "result")),
    "flux_oci_event_to_request_seconds": ("histogram", ()),
    "flux_oci_flux_events_total": ("counter", ("result",)),
}


def series_names() -> set[str]:
    """Every series name a query may use: histograms add _bucket, _sum and _count."""
    names: set[str] = set()
    for name, (kind, _) in CONTRACT.items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


# (kind, namespace, name, state, lag, versions behind, applied, latest)
_TARGETS = (
    ("OCIRepository", "apps", "podinfo", "behind", 1260.0, 2, "6.5.0", "6.5.2"),
    ("HelmChart", "apps", "apps-podinfo", "up_to_date", 0.0, 0, "6.5.2", "6.5.2"),
    ("OCIRepository", "team-a", "web", "stuck", 2400.0, 1, "latest", "latest"),
)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _histogram(name: str, observed: float, count: int, **labels: str) -> Iterator[str]:
    for le in ("1", "10", "60", "600", "+Inf"):
        in_bucket = count if le == "+Inf" or observed <= float(le) else 0
        yield f"{name}_bucket{_labels(**labels, le=le)} {in_bucket}"
    yield f"{name}_sum{_labels(**labels)} {observed * count}"
    yield f"{name}_count{_labels(**labels)} {count}"


def _lines(n: int, now: float) -> Iterator[str]:
    yield 'flux_oci_build_info{version="0.1.0"} 1'
    yield "flux_oci_leader 1"
    yield 'flux_oci_sources{kind="OCIRepository",namespace="apps",opted_in="true",shard=""} 1'
    yield 'flux_oci_sources{kind="OCIRepository",namespace="team-a",opted_in="true",shard=""} 1'
    yield 'flux_oci_sources{kind="OCIRepository",namespace="team-a",opted_in="false",shard=""} 4'
    yield 'flux_oci_sources{kind="HelmRepository",namespace="apps",opted_in="true",shard=""} 1'
    for kind, ns, name, state, lag, behind, applied, latest in _TARGETS:
        ids = {"kind": kind, "namespace": ns, "name": name}
        digest = "@sha256:" + "ab" * 32 if kind == "OCIRepository" else ""
        yield "flux_oci_target_info" + _labels(
            **ids,
            url=f"oci://ghcr.io/example/{name}",
            rule="semver:>=6.0.0" if applied != "latest" else "tag:latest",
            applied_revision=applied + digest,
            latest_revision=latest + digest.replace("ab", "cd"),
        ) + " 1"  # fmt: skip
        yield f"flux_oci_target_state{_labels(**ids, state=state)} 1"  # the current one only
        yield f"flux_oci_target_lag_seconds{_labels(**ids)} {lag}"
        yield f"flux_oci_target_versions_behind{_labels(**ids)} {behind}"
        yield f"flux_oci_target_last_check_timestamp_seconds{_labels(**ids)} {now - 30:.3f}"
        yield f"flux_oci_reconcile_requests_total{_labels(**ids)} {n}"
        yield f"flux_oci_reconcile_request_errors_total{_labels(**ids)} {n // 2}"
    for kind in ("OCIRepository", "HelmChart"):
        yield from _histogram("flux_oci_request_to_applied_seconds", 8.0, n, kind=kind)
        yield from _histogram("flux_oci_artifact_to_applied_seconds", 95.0, n, kind=kind)
    for reason in CHECK_ERROR_REASONS:
        yield f"flux_oci_check_errors_total{_labels(reason=reason)} {n if reason == 'auth' else 0}"
    for registry, codes in (("ghcr.io", ("200", "401", "503")), ("localhost:5000", ("200",))):
        for code in codes:
            yield f"flux_oci_registry_requests_total{_labels(registry=registry, code=code)} {n}"
        yield from _histogram(
            "flux_oci_registry_request_duration_seconds", 0.2, n * len(codes), registry=registry
        )
        yield f"flux_oci_registry_rate_limited_total{_labels(registry=registry)} {n}"
    yield f"flux_oci_tag_cache_requests_total {4 * n}"
    yield f"flux_oci_tag_cache_hits_total {3 * n}"
    for resource in ("ocirepositories", "helmrepositories", "helmcharts"):
        yield f"flux_oci_kube_lists_total{_labels(resource=resource)} 1"
        yield f"flux_oci_kube_api_errors_total{_labels(resource=resource)} {n}"
    for source, result, count in (
        ("distribution", "accepted", n),
        ("gitlab", "ignored", n // 3),
        ("distribution", "unauthorized", n // 5),
    ):
        yield f"flux_oci_events_received_total{_labels(source=source, result=result)} {count}"
    yield from _histogram("flux_oci_event_to_request_seconds", 0.4, n)
    for result, count in (("sent", n), ("duplicate", 0), ("failed", n // 10), ("dropped", 0)):
        yield f"flux_oci_flux_events_total{_labels(result=result)} {count}"
    yield "process_resident_memory_bytes 5.24288e+07"


def exposition(n: int, now: float) -> str:
    """The text of the ``n``-th scrape at unix time ``now``."""
    types = "".join(f"# TYPE {name.removesuffix('_total')} {kind}\n"
                    for name, (kind, _) in CONTRACT.items())  # fmt: skip
    return types + "\n".join(_lines(n, now)) + "\n"
