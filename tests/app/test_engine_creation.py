"""A new artifact's creation time in the engine: read after the check, never before it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from exporter.model import ANONYMOUS, DEFAULT_TLS, Credentials, RepositoryRef, TLSOptions
from tests.app.fakes import DIGEST, FakeRegistry, oci, rig

A = "a.example"
OLD = "1.0.0@sha256:" + "0" * 64
T0 = 1_800_000_000.0


@dataclass
class HeldCreation(FakeRegistry):
    """Creation times are read only once ``released`` is set; the rest answers at once."""

    released: threading.Event = field(default_factory=threading.Event)

    def manifest_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = DEFAULT_TLS,
    ) -> float | None:
        with self.lock:
            self.calls.append(f"created {repo}")
        self.released.wait(30)
        return self.created.get(digest)


def test_the_lag_starts_at_the_creation_time_once_read_and_the_check_did_not_wait() -> None:
    reg = HeldCreation(tags={f"{A}/app": ["1.0.0", "1.1.0"]}, created={DIGEST: T0 - 600})
    with rig(registry=reg, clock=lambda: T0, dry_run=True) as r:
        try:
            r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", applied=OLD)]})
            r.until(lambda: r.engine.checks == 1 and f"created {A}/app" in reg.calls)
            [first] = r.store.snapshot().targets  # written while the read is held
            assert first.state.value == "behind"
            assert first.latest_revision == f"1.1.0@{DIGEST}"
            assert first.lag_seconds == 0.0  # from its first sight, now
            reg.released.set()
            r.until(lambda: r.engine.checks == 2)  # the creation time nudged it
            [row] = r.store.snapshot().targets
            assert row.lag_seconds == pytest.approx(600.0)
            assert reg.calls.count(f"created {A}/app") == 1
            assert reg.calls.count(f"list {A}/app") == 1  # the cache answered the second check
        finally:
            reg.released.set()  # before the rig stops its workers
