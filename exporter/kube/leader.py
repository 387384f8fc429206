"""Leader election on a Lease (``coordination.k8s.io/v1``), so two replicas never both ask
Flux to reconcile.

Built on the official client's ``kubernetes.leaderelection`` (37.x), with what it lacks
for this use, each kept small:

- its ``LeaseLock`` talks through the default client configuration, not the one the
  exporter was given (``--kubeconfig``): the lock here is given our API client;
- it has no "am I leading *now*?": its renew loop only notices a lost lease after
  ``renew_deadline``, and a process frozen (SIGSTOP, a long GC pause, a partitioned node)
  resumes believing it still leads. :meth:`Leadership.leading` answers from the last
  *successful* renewal on the monotonic clock: valid for ``renew_deadline`` seconds,
  which is shorter than the lease, so a frozen leader stops acting before another
  replica can take the lease;
- ``run()`` returns for good once leadership is lost: here candidacy starts over;
- it never releases the lease: :meth:`Leadership.stop` does (an empty holder), so a
  rolling update or SIGTERM fails over at once instead of after the lease;
- it logs every retry at info: its logger is quietened and transitions are logged here.

Defaults follow controller-runtime: lease 15 s, renew deadline 10 s, retry 2 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)
logging.getLogger("leaderelection").setLevel(logging.WARNING)


class _Lock(LeaseLock):
    def __init__(self, api: k8s.ApiClient, name: str, namespace: str, identity: str) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = k8s.CoordinationV1Api(api)


class _Election(leaderelection.LeaderElection):
    def __init__(self, config: Any, owner: Leadership) -> None:
        super().__init__(config)
        self._owner = owner

    def try_acquire_or_renew(self) -> bool:
        owner = self._owner
        with owner.lock:
            if owner.stopping.is_set():
                return False
            started = owner.clock()
            done: bool = super().try_acquire_or_renew()
            if done:
                owner.renewed(started)
            return done


class Leadership:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease: float = 15.0,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
        on_change: Callable[[bool], None] = lambda leading: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease > renew_deadline > 1.2 * retry >= 1.2 or lease != int(lease):
            raise ValueError("need whole-second lease > renew deadline > 1.2 x retry >= 1.2 s")
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._lease = lease
        self._renew_deadline = renew_deadline
        self._retry = retry
        self._on_change = on_change
        self.clock = clock
        self.lock = threading.Lock()
        self._transitions = threading.Lock()
        self.stopping = threading.Event()
        self._renewed_at: float | None = None
        self._was_leading = False
        self._thread = threading.Thread(target=self._campaign, name="leader-election",
                                        daemon=True)  # fmt: skip
        self._watch = threading.Thread(target=self._watch_validity, name="leader-validity",
                                       daemon=True)  # fmt: skip

    def start(self) -> None:
        log.info("leader election: %s in Lease %s/%s", self.identity, self.namespace, self.name)
        self._thread.start()
        self._watch.start()

    def leading(self) -> bool:
        """True while the lease was renewed by us less than ``renew_deadline`` ago."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self._renew_deadline

    def renewed(self, started: float) -> None:
        """Called with the lock held, after a successful acquire or renew begun at ``started``."""
        self._renewed_at = started
        self._transition()

    def stop(self) -> None:
        """Stop renewing and, if we hold the lease, release it for the other replica."""
        self.stopping.set()  # no renewal starts after this
        got = self.lock.acquire(timeout=3.0)  # one under way may hold it: not for ever
        try:
            held = self.leading()
            self._renewed_at = None
        finally:
            if got:
                self.lock.release()
        self._transition()
        if held:
            self._release()

    # -- internals ------------------------------------------------------------------------------

    def _transition(self) -> None:
        with self._transitions:  # three threads call this: one change reported at a time
            self._transition_locked()

    def _transition_locked(self) -> None:
        now = self.leading()
        if now != self._was_leading:
            self._was_leading = now
            if now:
                log.info("became the leader (Lease %s/%s)", self.namespace, self.name)
            else:
                log.warning("stopped leading (Lease %s/%s): no requests or Events from here "
                            "until the lease is ours again", self.namespace, self.name)  # fmt: skip
            self._on_change(now)

    def _watch_validity(self) -> None:
        """Notice the moment leadership lapses (renewals failing, or a frozen process)."""
        while not self.stopping.wait(0.5):
            self._transition()

    def _campaign(self) -> None:
        while not self.stopping.is_set():
            config = electionconfig.Config(
                _Lock(self._api, self.name, self.namespace, self.identity),
                lease_duration=int(self._lease),  # the client writes str() then int()s it
                renew_deadline=self._renew_deadline,
                retry_period=self._retry,
                onstarted_leading=lambda: None,
                onstopped_leading=lambda: None,
            )
            try:
                _Election(config, self).run()
            except Exception as exc:  # API errors inside the client: try again
                log.warning("leader election failed: %s: %s; retrying", type(exc).__name__,
                            str(exc)[:200])  # fmt: skip
            self.stopping.wait(self._retry)

    def _release(self) -> None:
        api = k8s.CoordinationV1Api(self._api)
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace, _request_timeout=(3, 5))
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=(3, 5))
            log.info("released Lease %s/%s", self.namespace, self.name)
        except ApiException as exc:
            log.warning("could not release Lease %s/%s: HTTP %s", self.namespace, self.name,
                        exc.status)  # fmt: skip
        except Exception as exc:
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name,
                        type(exc).__name__)  # fmt: skip
