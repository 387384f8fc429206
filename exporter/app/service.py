"""Wiring for ``run`` and ``check``: API client, informers, registry, cache, engine, server.

The loop: wait for the initial lists, then step the engine once a second: it starts the
checks that are due and handles their results as they complete. A watch event hands the
changed objects to the engine at the next step (they are parsed once per change). The
tag cache bounds registry traffic whatever the check frequency. SIGTERM ends the loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from exporter import allocator
from exporter.app.actor import EventSink, EventSinks
from exporter.app.config import EngineConfig
from exporter.app.engine import Engine
from exporter.app.notifications import EVENTS, NotificationChannel
from exporter.app.secrets import hook_secrets
from exporter.app.workers import HostWorkers
from exporter.cloud.setup import cloud_credentials
from exporter.core.backoff import Backoff
from exporter.core.hooks import HookSource
from exporter.kube.access import AccessResolver
from exporter.kube.discovery import Resource, discover
from exporter.kube.errors import KubeError, config_reason
from exporter.kube.flux_events import FluxEvents, shown_address
from exporter.kube.identity import identity, lease_name, lease_namespace, shard_of
from exporter.kube.informer import ApiListWatch, Informer
from exporter.kube.leader import Leadership
from exporter.kube.trigger import Trigger
from exporter.metrics.exposition import Exposition
from exporter.metrics.instruments import Metrics
from exporter.model import ErrorReason
from exporter.registry.backoff import RetryPolicy
from exporter.registry.cache import TagCache
from exporter.registry.client import RegistryClient
from exporter.settings import Address, Settings
from exporter.state import StateStore
from exporter.web.endpoints import Endpoints
from exporter.web.listener import Listener

log = logging.getLogger(__name__)
_from_file: Any = k8s_config.new_client_from_config
_in_cluster: Any = k8s_config.load_incluster_config


def api_client(settings: Settings) -> k8s.ApiClient:
    """The API client: ``--kubeconfig``, else in-cluster, else ``$KUBECONFIG`` or
    ``~/.kube/config``. A failure names what was tried and why it failed."""
    in_cluster = "not tried"
    source = settings.kubeconfig or _default_kubeconfig()
    try:
        if settings.kubeconfig:
            return cast(k8s.ApiClient, _from_file(config_file=settings.kubeconfig))
        try:
            _in_cluster()
            return k8s.ApiClient()
        except k8s_config.ConfigException as exc:
            in_cluster = config_reason(exc)
            return cast(k8s.ApiClient, _from_file())
    except Exception as exc:
        tried = "" if settings.kubeconfig else f"; in-cluster: {in_cluster}"
        reason = config_reason(exc) if os.path.exists(source) else "no such file"
        raise KubeError(
            f"no usable Kubernetes configuration: kubeconfig {source}: {reason}{tried}"
        ) from None


def _default_kubeconfig() -> str:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return first or os.path.expanduser("~/.kube/config")


class ListenError(OSError):
    """An address the exporter was asked to serve on cannot be listened on (the port is
    taken, not allowed, or the host is not this machine's); the message names both."""


def _listen_error(address: Address, exc: OSError) -> ListenError:
    # the system's words for errno ("Address already in use"); a resolver error has its own
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    return ListenError(f"cannot listen on {address}: {reason}")


class Service:
    def __init__(self, settings: Settings, *, dry_run: bool | None = None) -> None:
        self.settings = settings
        self.api = api_client(settings)
        self.resources = discover(self.api)
        if "OCIRepository" not in self.resources:
            log.warning("the API server serves no OCIRepository (is Flux installed?)")
        self.metrics = Metrics()
        self.registry = RegistryClient(
            observer=self.metrics,
            max_concurrency_per_registry=settings.registry_concurrency,
            # no waiting inside a check: a 429 comes back at once (the target returns
            # after Retry-After), other failures get one quick retry
            retry_policy=RetryPolicy(retries=1, max_delay=0.5, retry_rate_limited=False),
        )
        self.cache = TagCache(self.registry, ttl=settings.tag_ttl, clock=time.monotonic)
        self.store = StateStore()
        self.metrics.attach(self.cache.stats)
        self.identity = identity(os.environ)  # the Lease holder, the Events' reportingInstance
        self.leadership: Leadership | None = None
        if settings.leader_elect and not settings.once:
            self.leadership = Leadership(
                self.api,
                namespace=lease_namespace(settings.leader_election_namespace),
                name=lease_name(settings.leader_election_id, settings.watch_label_selector),
                identity=self.identity,
                on_change=self._lead_changed,
                lease=settings.leader_election_lease_duration,
                renew_deadline=settings.leader_election_renew_deadline,
                retry=settings.leader_election_retry_period,
            )
            self.metrics.leader.set(0)
        self.exposition = Exposition(
            self.store, settings.tag_ttl, shard=shard_of(settings.watch_label_selector),
            leading=self.leading, rendered=allocator.trim,
        )  # fmt: skip
        self.wake = threading.Event()
        self.metrics.kube_resources(r.plural for r in self.resources.values())
        self.informers = [
            Informer(
                ApiListWatch(
                    self.api, resource, namespace, label_selector=settings.watch_label_selector
                ),
                self._on_event,
                observer=self.metrics,
            )
            for resource in self.resources.values()
            for namespace in (settings.namespaces or (None,))
        ]
        trigger = Trigger(
            self.api,
            annotation_prefix=settings.annotation_prefix,
            rate=settings.patch_rate,
            instance=self.identity,
        )
        dry_run = settings.dry_run if dry_run is None else dry_run
        events: EventSink = trigger
        self.flux_events: FluxEvents | None = None
        if settings.events_addr and not dry_run:  # a dry run sends nothing anywhere
            self.flux_events = FluxEvents(
                settings.events_addr, instance=self.identity, observer=self.metrics
            )
            self.metrics.flux_events_enabled()
            events = EventSinks(self.flux_events, trigger)  # queued first: never waits
            log.info("Events also go to Flux's notification-controller at %s",
                     shown_address(settings.events_addr))  # fmt: skip
        self.workers = HostWorkers(settings.registry_concurrency)
        self.cloud, self.cloud_http = cloud_credentials(os.environ)
        self.engine = Engine(
            EngineConfig(
                prefix=settings.annotation_prefix,
                min_interval=settings.min_interval,
                default_interval=settings.interval,
                dry_run=dry_run,
                backoff=Backoff(settings.stuck_backoff_min, settings.stuck_backoff_max),
                stall_after=max(120.0, settings.interval * 3),
                event_gap=settings.event_gap,
                expedite_window=settings.expedite_window,
                tag_parsing=settings.tag_parsing,
            ),
            resources=self.resources,
            cache=self.cache,
            access=AccessResolver(
                self.api,
                clock=time.monotonic,
                cloud=self.cloud,
                object_level_identity=settings.object_level_workload_identity,
                default_service_account=settings.default_service_account,
            ),
            patcher=trigger,
            events=events,
            store=self.store,
            observer=self.metrics,
            workers=self.workers,
            leading=self.leading,
        )
        self.notifications: NotificationChannel | None = None
        if settings.notify_watch and not settings.once:
            self.notifications = NotificationChannel(
                self.api, settings.namespaces, self.engine.deliver, self.metrics.event_received,
                observer=self.metrics, leading=self.leading,
                everywhere=settings.notify_everywhere,
            )  # fmt: skip
            self.metrics.kube_resources([EVENTS.plural])
            self.metrics.events_enabled([HookSource.KUBERNETES.value])
        self.stopping = threading.Event()
        self._stopped = False

    def leading(self) -> bool:
        return self.leadership is None or self.leadership.leading()

    def _lead_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        self.engine.lead_changed(leading)

    def _on_event(self, kind: str, resource: Resource, obj: Mapping[str, Any]) -> None:
        self.wake.set()

    def objects(self) -> dict[str, Sequence[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for informer in self.informers:
            found.setdefault(informer.resource.kind, []).extend(informer.objects())
        return dict(found)

    def start_informers(self, timeout: float = 60.0) -> bool:
        """Start every watch; wait for the Flux objects' lists (not the notifications':
        a missing permission there must not keep the exporter unready)."""
        if self.notifications is not None:
            self.notifications.start()
        for informer in self.informers:
            informer.start()
        deadline = time.monotonic() + timeout
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in self.informers)

    def run_once(self) -> int:
        self.wake.clear()
        return self.engine.run_pass(self.objects())

    def healthy(self) -> tuple[bool, str]:
        return self.engine.healthy()

    def ready(self) -> tuple[bool, str]:
        synced = all(i.synced.is_set() for i in self.informers)
        done = self.store.passes > 0  # /readyz is probed often: no copy of 10,000 rows
        return (synced and done, f"lists synced: {synced}; first full check done: {done}")

    def serve(self) -> Endpoints:
        address = self.settings.listen
        try:
            server = Endpoints(
                (address.host, address.port),
                self.metrics.registry,
                self.exposition.body,
                self.healthy,
                self.ready,
            )
        except OSError as exc:
            raise _listen_error(address, exc) from exc
        server.start()
        self.exposition.start()
        log.info("serving /metrics, /healthz, /readyz on %s", address)
        return server

    def listen_for_events(self, env: Mapping[str, str]) -> Listener | None:
        """Start the events listener when ``events_listen`` is set and a source has a secret."""
        address = self.settings.events_listen
        if address is None:
            return None
        secrets = hook_secrets(env)
        if not secrets:
            log.warning("--events-listen is set but no webhook secret is: events stay off "
                        "(set FLUX_OCI_TRIGGER_<SOURCE>_SECRET_FILE)")  # fmt: skip
            return None
        self.metrics.events_enabled(s.value for s in secrets)
        try:
            listener = Listener(
                (address.host, address.port),
                secrets,
                self.engine.deliver,
                self.metrics.event_received,
                gitlab_host=self.settings.gitlab_registry.lower(),
            )
        except OSError as exc:
            raise _listen_error(address, exc) from exc
        listener.start()
        log.info("events listener on %s for %s", address,
                 ", ".join(f"/hooks/{s.value}" for s in secrets))  # fmt: skip
        return listener

    def loop(self) -> None:
        if self.leadership is not None:
            self.leadership.start()
        self.wake.clear()
        self.engine.sync(self.objects())
        while not self.stopping.is_set():
            if self.wake.is_set():
                self.wake.clear()
                try:
                    self.engine.sync(self.objects())
                except Exception:
                    log.exception("reading the watched objects failed")
                    self.metrics.check_failed(ErrorReason.INTERNAL)
            try:
                self.engine.step(1.0)
            except Exception:
                log.exception("engine step failed")
                self.metrics.check_failed(ErrorReason.INTERNAL)
                self.stopping.wait(1.0)

    def request_stop(self) -> None:
        """Safe from a signal handler: the loop returns within a second."""
        self.stopping.set()
        self.wake.set()

    def stop(self) -> None:
        """Bounded: about 10 s at worst, whatever is hung (Kubernetes gives 30 s)."""
        if self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        self.stopping.set()
        self.wake.set()
        if self.leadership is not None:
            self.leadership.stop()  # first: the other replica takes over at once
        for informer in self.informers:  # all at once, then one shared wait
            informer.signal_stop()
        if self.notifications is not None:
            self.notifications.signal_stop()
        deadline = time.monotonic() + 5.0
        for informer in self.informers:
            informer.join(deadline - time.monotonic())
        if self.notifications is not None:
            self.notifications.join(deadline - time.monotonic())
        self.engine.stop()  # the actor's last Events first, then their copies to Flux
        if self.flux_events is not None:
            self.flux_events.stop(timeout=2.0)
        self.workers.stop(timeout=2.0)
        self.exposition.stop()
        self.registry.close()
        self.cloud_http.close()
        log.info("stopped in %.1fs", time.monotonic() - started)
