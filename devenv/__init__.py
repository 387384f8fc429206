"""Local servers for tests, benchmarks and the demo: registry, Flux cluster, Prometheus.

Not part of the exporter's distribution; everything binds to loopback only.
"""
