"""Wiring for ``run`` and ``check``: API client, informers, registry, cache, checker, server.

The loop: wait for the initial lists, then every ``min_interval`` seconds (or sooner when
a watch event arrives) run a pass that checks the targets that are due. The tag cache
bounds registry traffic whatever the pass frequency. SIGTERM ends the loop cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from exporter.access import AccessResolver
from exporter.checker import Checker, CheckerConfig
from exporter.discovery import KubeError, Resource, discover
from exporter.kube import Informer
from exporter.memory import Backoff
from exporter.metrics import Metrics
from exporter.registry.client import RegistryClient
from exporter.server import Endpoints
from exporter.settings import Settings
from exporter.state import StateStore
from exporter.tagcache import TagCache
from exporter.trigger import Trigger

log = logging.getLogger(__name__)
_from_file: Any = k8s_config.new_client_from_config
_in_cluster: Any = k8s_config.load_incluster_config


def api_client(settings: Settings) -> k8s.ApiClient:
    try:
        if settings.kubeconfig:
            return cast(k8s.ApiClient, _from_file(config_file=settings.kubeconfig))
        try:
            _in_cluster()
            return k8s.ApiClient()
        except k8s_config.ConfigException:
            return cast(k8s.ApiClient, _from_file())
    except Exception as exc:
        raise KubeError(f"no usable Kubernetes configuration: {type(exc).__name__}") from None


class Service:
    def __init__(self, settings: Settings, *, dry_run: bool | None = None) -> None:
        self.settings = settings
        self.api = api_client(settings)
        self.resources = discover(self.api)
        if "OCIRepository" not in self.resources:
            log.warning("the API server serves no OCIRepository (is Flux installed?)")
        self.metrics = Metrics()
        self.registry = RegistryClient(
            observer=self.metrics, max_concurrency_per_registry=settings.registry_concurrency
        )
        self.cache = TagCache(self.registry, ttl=settings.tag_ttl, clock=time.monotonic)
        self.store = StateStore()
        self.metrics.attach(self.store, self.cache.stats, settings.tag_ttl)
        self.wake = threading.Event()
        self.metrics.kube_resources(r.plural for r in self.resources.values())
        self.informers = [
            Informer(self.api, resource, namespace, self._on_event, observer=self.metrics)
            for resource in self.resources.values()
            for namespace in (settings.namespaces or (None,))
        ]
        self.checker = Checker(
            CheckerConfig(
                prefix=settings.annotation_prefix,
                min_interval=settings.min_interval,
                default_interval=settings.interval,
                dry_run=settings.dry_run if dry_run is None else dry_run,
                backoff=Backoff(settings.stuck_backoff_min, settings.stuck_backoff_max),
            ),
            resources=self.resources,
            cache=self.cache,
            access=AccessResolver(self.api, clock=time.monotonic),
            trigger=Trigger(
                self.api, annotation_prefix=settings.annotation_prefix, rate=settings.patch_rate
            ),
            store=self.store,
            metrics=self.metrics,
        )
        self.heartbeat = time.monotonic()
        self.stopping = threading.Event()

    def _on_event(self, kind: str, resource: Resource, obj: Mapping[str, Any]) -> None:
        self.wake.set()

    def objects(self) -> dict[str, Sequence[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for informer in self.informers:
            found.setdefault(informer.resource.kind, []).extend(informer.objects())
        return dict(found)

    def start_informers(self, timeout: float = 60.0) -> bool:
        for informer in self.informers:
            informer.start()
        deadline = time.monotonic() + timeout
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in self.informers)

    def run_once(self) -> int:
        self.heartbeat = time.monotonic()
        return self.checker.run_pass(self.objects(), force=True)

    def healthy(self) -> tuple[bool, str]:
        age = time.monotonic() - self.heartbeat
        limit = max(120.0, self.settings.interval * 3)
        return (age < limit, f"last pass {age:.0f}s ago (limit {limit:.0f}s)")

    def ready(self) -> tuple[bool, str]:
        synced = all(i.synced.is_set() for i in self.informers)
        done = self.store.snapshot().passes > 0
        return (synced and done, f"lists synced: {synced}; first pass done: {done}")

    def serve(self) -> Endpoints:
        host, _, port = self.settings.listen.rpartition(":")
        server = Endpoints((host.strip("[]") or "0.0.0.0", int(port)),
                           self.metrics.registry, self.healthy, self.ready)  # fmt: skip
        server.start()
        log.info("serving /metrics, /healthz, /readyz on %s", self.settings.listen)
        return server

    def loop(self) -> None:
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                self.checker.run_pass(self.objects())
            except Exception:
                log.exception("pass failed")
                self.metrics.check_errors.labels("kubernetes").inc()
            self.wake.wait(self.settings.min_interval)
            if self.wake.is_set():
                self.wake.clear()
                self.stopping.wait(1.0)  # let a burst of watch events settle

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for informer in self.informers:
            informer.stop()
        self.registry.close()
