"""Push events in the engine: a nudge, never the truth; coalesced but never lost."""

from __future__ import annotations

import time

from exporter.core.hooks import HookSource, Nudge
from tests.app.fakes import DIGEST, FakeRegistry, oci, rig

HOST = "registry.example:5000"
GITLAB = "registry.gitlab.com"
OLD = f"1.0.0@{DIGEST}"  # applied: the digest the fake registry serves


def count(r: object, source: str, result: str) -> float:
    from tests.app.fakes import Rig

    assert isinstance(r, Rig)
    value = r.metrics.registry.get_sample_value(
        "flux_oci_events_received_total", {"source": source, "result": result}
    )
    return value or 0.0


def test_an_event_refreshes_the_listing_and_requests_at_once() -> None:
    reg = FakeRegistry(tags={f"{HOST}/team/app": ["1.0.0"]})
    with rig(registry=reg, default_interval=3600) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{HOST}/team/app", applied=OLD)]})
        r.until(lambda: r.state("app") == "up_to_date" or r.engine.checks == 1)
        reg.tags[f"{HOST}/team/app"] = ["1.0.0", "1.1.0"]  # pushed; the TTL has not run out
        r.engine.deliver(HookSource.DISTRIBUTION, [Nudge("team/app", HOST)], time.time())
        r.until(lambda: len(r.kube.patches) == 1)
        assert r.kube.patches[0][2] == f"1.1.0@{DIGEST}"
        assert count(r, "distribution", "accepted") == 1
        histogram = r.metrics.registry.get_sample_value("flux_oci_event_to_request_seconds_count")
        assert histogram == 1


def test_an_event_for_nothing_tracked_is_ignored_and_costs_nothing() -> None:
    reg = FakeRegistry(tags={f"{HOST}/team/app": ["1.0.0"]})
    with rig(registry=reg, default_interval=3600) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{HOST}/team/app")]})
        # settled: checked, and the new artifact's creation time read (after the first pass)
        r.until(lambda: r.engine.checks == 1 and f"created {HOST}/team/app" in reg.calls)
        calls = len(reg.calls)
        r.engine.deliver(HookSource.DISTRIBUTION, [Nudge("team/other", HOST)], time.time())
        r.engine.deliver(HookSource.DISTRIBUTION, [], time.time())
        for _ in range(5):
            r.engine.step(0.01)
        assert len(reg.calls) == calls
        assert count(r, "distribution", "ignored") == 2


def test_a_burst_is_coalesced_and_the_last_push_is_not_lost() -> None:
    now = [1_000_000.0]
    reg = FakeRegistry(tags={f"{HOST}/team/app": ["1.0.0"]})
    with rig(registry=reg, default_interval=3600, clock=lambda: now[0]) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{HOST}/team/app", applied=OLD)]})
        r.until(lambda: r.engine.checks == 1)
        listings = sum(c.startswith("list") for c in reg.calls)
        reg.tags[f"{HOST}/team/app"] = ["1.0.0", "1.1.0"]
        r.engine.deliver(HookSource.DISTRIBUTION, [Nudge("team/app", HOST)], now[0])
        r.until(lambda: r.engine.checks == 2)
        reg.tags[f"{HOST}/team/app"] = ["1.0.0", "1.1.0", "1.2.0"]  # a second push, 0.5 s later
        now[0] += 0.5
        for _ in range(3):
            r.engine.deliver(HookSource.DISTRIBUTION, [Nudge("team/app", HOST)], now[0])
        for _ in range(5):
            r.engine.step(0.01)
        assert count(r, "distribution", "coalesced") == 3
        assert sum(c.startswith("list") for c in reg.calls) == listings + 1
        now[0] += 2  # the gap has passed: the deferred refresh runs
        r.until(lambda: any(p[2].startswith("1.2.0@") for p in r.kube.patches))
        assert sum(c.startswith("list") for c in reg.calls) == listings + 2


def test_a_gitlab_project_covers_every_image_below_it_on_its_registry() -> None:
    reg = FakeRegistry(
        tags={f"{GITLAB}/group/app": ["1.0.0"], f"{GITLAB}/group/app/worker": ["1.0.0"],
              f"{GITLAB}/group/application": ["1.0.0"], f"{HOST}/group/app": ["1.0.0"]}
    )  # fmt: skip
    objects = [
        oci("app", f"oci://{GITLAB}/group/app"),
        oci("worker", f"oci://{GITLAB}/group/app/worker"),
        oci("application", f"oci://{GITLAB}/group/application"),
        oci("elsewhere", f"oci://{HOST}/group/app"),
    ]
    with rig(registry=reg, default_interval=3600) as r:
        r.engine.sync({"OCIRepository": objects})
        r.until(lambda: r.engine.checks == 4)
        before = list(reg.calls)
        nudge = Nudge("group/app", GITLAB, subtree=True)
        r.engine.deliver(HookSource.GITLAB, [nudge], time.time())
        r.until(lambda: r.engine.checks == 6)
        for _ in range(5):
            r.engine.step(0.01)
        listed = sorted(c for c in reg.calls[len(before) :] if c.startswith("list"))
        assert listed == [f"list {GITLAB}/group/app", f"list {GITLAB}/group/app/worker"]


def test_a_tag_push_expedites_until_the_build_lands() -> None:
    now = [1_000_000.0]
    reg = FakeRegistry(tags={f"{GITLAB}/group/app": ["1.0.0"]})
    with rig(registry=reg, default_interval=3600, clock=lambda: now[0], tag_ttl=1) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{GITLAB}/group/app", applied=OLD)]})
        r.until(lambda: r.engine.checks == 1)
        expedite = Nudge("group/app", GITLAB, subtree=True, expedite=True)
        r.engine.deliver(HookSource.GITLAB, [expedite], now[0])
        r.until(lambda: r.engine.checks == 2)
        for _ in range(3):  # the build is running: checked every few seconds
            now[0] += 6
            checks = r.engine.checks
            r.until(lambda checks=checks: r.engine.checks == checks + 1)  # type: ignore[misc]
        reg.tags[f"{GITLAB}/group/app"] = ["1.0.0", "1.1.0"]  # the build pushed its image
        now[0] += 6
        r.until(lambda: len(r.kube.patches) == 1)
        settled = r.engine.checks
        now[0] += 60  # back to the hourly interval
        for _ in range(5):
            r.engine.step(0.01)
        assert r.engine.checks == settled


def test_a_notification_reaches_only_its_namespace_even_when_coalesced() -> None:
    now = [1_000_000.0]
    reg = FakeRegistry(tags={f"{HOST}/team/app": ["1.0.0"]})
    url = f"oci://{HOST}/team/app"
    objects = [oci(f"app-{ns}", url, ns=ns, applied=OLD) for ns in ("a", "b", "c")]
    with rig(registry=reg, default_interval=3600, clock=lambda: now[0]) as r:
        r.engine.sync({"OCIRepository": objects})
        r.until(lambda: r.engine.checks == 3)
        reg.tags[f"{HOST}/team/app"] = ["1.0.0", "1.1.0"]

        def scoped(ns: str) -> list[Nudge]:
            return [Nudge("team/app", HOST, namespaces=frozenset({ns}))]

        r.engine.deliver(HookSource.KUBERNETES, scoped("a"), now[0])
        r.until(lambda: len(r.kube.patches) == 1)
        assert r.kube.patches[0][0] == "app-a"
        now[0] += 0.5  # within the gap: deferred, merged with the next, run at its end
        r.engine.deliver(HookSource.KUBERNETES, scoped("b"), now[0])
        r.engine.deliver(HookSource.KUBERNETES, scoped("b"), now[0])
        for _ in range(5):
            r.engine.step(0.01)
        assert count(r, "kubernetes", "coalesced") == 2
        now[0] += 2
        r.until(lambda: len(r.kube.patches) == 2)
        for _ in range(5):
            r.engine.step(0.01)
        assert sorted(p[0] for p in r.kube.patches) == ["app-a", "app-b"]  # never c
        assert count(r, "kubernetes", "accepted") == 1
