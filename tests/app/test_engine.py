"""The engine in process: concurrency per host, isolation of a hung host, deadlines, 429
without sleeping, request once per artifact, dry-run, one bad object, order of acts."""

from __future__ import annotations

import threading

from exporter.app.actor import EventSinks
from exporter.flux.policy import TagParsing
from exporter.kube.trigger import ObjectRef
from exporter.registry.errors import (
    RegistryProtocolError,
    RegistryRateLimited,
    RegistryUnavailable,
)
from tests.app.fakes import DIGEST, RESOURCES, FakeKube, FakeRegistry, oci, rig

A, B = "a.example", "b.example"
OLD = "1.0.0@sha256:" + "0" * 64


def registry(**tags: list[str]) -> FakeRegistry:
    return FakeRegistry(tags={k.replace("__", "/").replace("_", "."): v for k, v in tags.items()})


def test_a_behind_target_is_requested_once_with_its_event() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    with rig(registry=reg) as r:
        objects = {"OCIRepository": [oci("app", f"oci://{A}/app", applied=OLD)]}
        r.engine.sync(objects)
        r.until(lambda: len(r.kube.events) == 1)
        assert r.kube.patches == [("app", r.kube.patches[0][1], f"1.1.0@{DIGEST}")]
        assert r.kube.events[0][:2] == ("app", "ReconcileRequested")
        # further checks (the object unchanged: no annotation seen yet) never repeat it
        r.engine.nudge([r.store.snapshot().targets[0].id])
        r.until(lambda: r.state("app") == "pending")
        assert len(r.kube.patches) == 1
        assert r.store.snapshot().requests[r.store.snapshot().targets[0].id] == 1


def test_events_name_the_object_by_uid_and_resource_version_and_the_revision() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    annotations = {"oci-trigger.gitlab.com/enabled": "true", "event.toolkit.fluxcd.io/env": "prod"}
    app = oci("app", f"oci://{A}/app", applied=OLD, rv="7", annotations=annotations)
    with rig(registry=reg) as r:
        r.engine.sync({"OCIRepository": [app]})
        r.until(lambda: len(r.kube.events) == 1)
        assert (r.kube.refs[0].uid, r.kube.refs[0].resource_version) == ("uid-apps-app", "7")
        assert r.kube.refs[0].event_annotations == (("event.toolkit.fluxcd.io/env", "prod"),)
        assert r.kube.revisions == [f"1.1.0@{DIGEST}"]  # the requested one


def test_every_event_reaches_each_sink_in_turn_whatever_one_of_them_does() -> None:
    first, second = FakeKube(), FakeKube()
    ref = ObjectRef(RESOURCES["OCIRepository"], "apps", "app")
    EventSinks(first, second).event(ref, "NoMatchingTag", "none", warning=True, revision="r")
    assert first.events == second.events == [("app", "NoMatchingTag", "none")]
    assert first.revisions == second.revisions == ["r"]

    class Broken:
        def event(self, ref: ObjectRef, reason: str, message: str, *, warning: bool = False,
                  revision: str = "") -> None:  # fmt: skip
            raise RuntimeError("a bug")

    EventSinks(Broken(), second).event(ref, "ReconcileRequested", "new", revision="r2")
    assert second.revisions == ["r", "r2"]


def test_dry_run_decides_without_patching_or_events() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    bad = oci("bad", f"oci://{A}/app")
    bad["metadata"]["annotations"]["oci-trigger.gitlab.com/min-age"] = "soon"
    with rig(registry=reg, dry_run=True) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", applied=OLD), bad]})
        r.until(lambda: r.state("app") == "behind" and r.state("bad") == "config_error")
        row = r.store.snapshot().targets[0]
        assert row.would_request and r.kube.patches == [] and r.kube.events == []


def test_concurrency_is_bounded_per_host_and_hosts_run_side_by_side() -> None:
    reg = FakeRegistry(delay=0.05)
    objects = []
    for host in (A, B):
        for i in range(8):
            reg.tags[f"{host}/r{i}"] = ["1.0.0"]
            objects.append(oci(f"{host[0]}{i}", f"oci://{host}/r{i}"))
    with rig(registry=reg, concurrency=2) as r:
        r.engine.sync({"OCIRepository": objects})
        took = r.until(lambda: r.engine.checks == 16)
        assert reg.peak == {A: 2, B: 2}
        # 16 listings + 16 digests at 50 ms, 2 at a time per host, two hosts side by side
        assert took < 16 * 2 * 0.05  # well under the serial time


def test_a_hung_host_delays_no_other_host_and_is_reported_at_its_deadline() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0"], f"{B}/hung": ["1.0.0"]})
    reg.gates[B] = threading.Event()  # B accepts and never answers
    with rig(registry=reg, deadline=0.3) as r:
        r.engine.sync(
            {"OCIRepository": [oci("hung", f"oci://{B}/hung"), oci("ok", f"oci://{A}/app")]}
        )
        took = r.until(lambda: r.state("ok") == "behind")
        assert took < 0.5  # not held up by the hung host
        r.until(lambda: r.state("hung") == "error")
        assert "no answer within 0s" in r.row_message("hung") or "within" in r.row_message("hung")
        assert r.engine.healthy()[0]  # progress: the overdue check was reported
        assert (
            r.metrics.registry.get_sample_value(
                "flux_oci_check_errors_total", {"reason": "unavailable"}
            )
            == 1
        )
        reg.gates[B].set()  # the registry answers at last: the result is used
        r.until(lambda: r.state("hung") == "behind")


def test_a_429_comes_back_at_once_and_the_target_waits_for_retry_after() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0"]})
    reg.failures[A] = RegistryRateLimited(f"{A}: rate limited (HTTP 429)", retry_after=120)
    now = [1_000_000.0]
    with rig(registry=reg, clock=lambda: now[0], default_interval=60, tag_ttl=0.01) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app")]})
        took = r.until(lambda: r.state("app") == "error")
        assert took < 1.0  # nothing slept
        calls = len(reg.calls)
        now[0] += 90  # past the interval, still inside Retry-After
        for _ in range(5):
            r.engine.step(0.01)
        assert len(reg.calls) == calls
        del reg.failures[A]
        now[0] += 31  # Retry-After is over
        r.until(lambda: r.state("app") == "behind")


def test_one_failing_object_leaves_the_others_alone() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    reg.failures[B] = RegistryUnavailable(f"{B}: HTTP 503 after 2 attempts")
    bad = oci("bad", "oci://UPPER.example/Bad//path")
    bad["metadata"]["annotations"]["oci-trigger.gitlab.com/interval"] = "soon"
    with rig(registry=reg) as r:
        r.engine.sync(
            {
                "OCIRepository": [
                    bad,
                    oci("down", f"oci://{B}/x", applied=OLD),
                    oci("app", f"oci://{A}/app", applied=OLD),
                ]
            }
        )
        r.until(lambda: len(r.kube.patches) == 1 and r.state("down") == "error")
        assert r.state("bad") == "config_error"
        reasons = sorted((name, reason) for name, reason, _ in r.kube.events)
        assert reasons == [
            ("app", "ReconcileRequested"),
            ("bad", "InvalidConfiguration"),
            ("down", "RegistryCheckFailed"),
        ]


def test_a_refused_patch_backs_off_with_one_warning_event() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    kube = FakeKube(fail=True)
    now = [1_000_000.0]
    with rig(registry=reg, kube=kube, clock=lambda: now[0], default_interval=2) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", applied=OLD)]})
        r.until(lambda: sum(r.store.snapshot().request_errors.values()) == 1)
        r.until(lambda: [e for e in kube.events if e[1] == "ReconcileRequestFailed"] != [])
        now[0] += 30  # inside the back-off (1 min): no new attempt, however short the interval
        for _ in range(5):
            r.engine.step(0.01)
        assert sum(r.store.snapshot().request_errors.values()) == 1
        now[0] += 31
        r.until(lambda: sum(r.store.snapshot().request_errors.values()) == 2)
        warnings = [e for e in kube.events if e[1] == "ReconcileRequestFailed"]
        assert len(warnings) == 1 and "HTTP 500" in warnings[0][2]  # once, not per attempt
        assert kube.revisions[kube.events.index(warnings[0])] == f"1.1.0@{DIGEST}"
        kube.fail = False
        now[0] += 121  # the second back-off: 2 min
        r.until(lambda: len(kube.patches) == 1)


def test_a_slow_api_server_does_not_hold_up_checks() -> None:
    reg = FakeRegistry(tags={f"{A}/a{i}": ["1.0.0", "1.1.0"] for i in range(3)})
    gate = threading.Event()
    kube = FakeKube(patch_gate=gate)
    with rig(registry=reg, kube=kube) as r:
        r.engine.sync(
            {"OCIRepository": [oci(f"a{i}", f"oci://{A}/a{i}", applied=OLD) for i in range(3)]}
        )
        r.until(lambda: r.engine.checks == 3)  # all decided while the first patch hangs
        assert kube.patches == []
        gate.set()
        r.until(lambda: len(kube.patches) == 3)


def test_a_restart_does_not_repeat_a_request_recorded_on_the_object() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    obj = oci(
        "app",
        f"oci://{A}/app",
        applied=OLD,
        annotations={
            "oci-trigger.gitlab.com/enabled": "true",
            "oci-trigger.gitlab.com/requested-revision": f"1.1.0@{DIGEST}",
            "reconcile.fluxcd.io/requestedAt": "2026-01-01T00:00:00Z",
        },
    )
    with rig(registry=reg) as r:  # a fresh engine: no memory of its own
        r.engine.sync({"OCIRepository": [obj]})
        r.until(lambda: r.state("app") == "pending")
        assert r.kube.patches == []


def test_a_changed_object_is_checked_again_and_a_deleted_one_drops_out() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "2.0.0"]})
    with rig(registry=reg) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", semver="<2.0.0")]})
        r.until(lambda: r.store.snapshot().targets[:1] != () and r.engine.checks == 1)
        assert r.store.snapshot().targets[0].latest_revision.startswith("1.0.0@")
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", semver=">=2.0.0", rv="2")]})
        r.until(lambda: r.store.snapshot().targets[0].latest_revision.startswith("2.0.0@"))
        r.engine.sync({"OCIRepository": []})
        assert r.store.snapshot().targets == ()


def test_objects_are_parsed_once_per_resource_version() -> None:
    with rig(registry=FakeRegistry(tags={f"{A}/app": ["1.0.0"]})) as r:
        objects = {"OCIRepository": [oci(f"o{i}", f"oci://{A}/app") for i in range(50)]}
        r.engine.sync(objects)
        r.engine.sync(objects)
        r.engine.sync(objects)
        assert r.engine.catalog.parses == 50


def test_a_raised_interval_is_logged_once(caplog: object) -> None:
    import logging

    assert isinstance(caplog, __import__("pytest").LogCaptureFixture)
    obj = oci(
        "app",
        f"oci://{A}/app",
        annotations={
            "oci-trigger.gitlab.com/enabled": "true",
            "oci-trigger.gitlab.com/interval": "100ms",
        },
    )
    with caplog.at_level(logging.WARNING), rig(registry=FakeRegistry()) as r:
        r.engine.sync({"OCIRepository": [obj]})
        r.engine.sync({"OCIRepository": [obj]})
    raised = [m for m in caplog.messages if "apps/app" in m and "interval" in m]
    assert len(raised) == 1, caplog.messages


def test_suspended_and_pinned_targets_need_no_registry() -> None:
    reg = FakeRegistry()
    with rig(registry=reg) as r:
        r.engine.sync(
            {
                "OCIRepository": [
                    oci("paused", f"oci://{A}/app", suspend=True),
                    oci("fixed", f"oci://{A}/app", semver=None, tag=None)
                    | {"spec": {"url": f"oci://{A}/app", "ref": {"digest": DIGEST}}},
                ]
            }
        )
        r.engine.step(0.01)
        assert (r.state("paused"), r.state("fixed")) == ("suspended", "pinned")
        assert reg.calls == []


def test_run_pass_checks_everything_and_waits_for_the_patches() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]}, delay=0.01)
    with rig(registry=reg) as r:
        objects = {"OCIRepository": [oci(f"o{i}", f"oci://{A}/app", applied=OLD) for i in range(5)]}
        assert r.engine.run_pass(objects) == 5
        assert len(r.kube.patches) == 5 and len(r.kube.events) == 5
        assert r.store.snapshot().passes == 1


def test_calendar_versions_follow_the_configured_flux_rule() -> None:
    tags = {f"{A}/app": ["2024.12.31", "2025.02.03"]}  # leading zeros: versions since Flux 2.7
    for parsing, picked in (
        (TagParsing.FLUX_2_7, "2025.02.03"),
        (TagParsing.FLUX_2_6, "2024.12.31"),
    ):
        with rig(registry=FakeRegistry(tags=dict(tags)), tag_parsing=parsing) as r:
            r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", semver=">=2024.0.0")]})
            r.until(lambda: r.engine.checks == 1)
            assert r.store.snapshot().targets[0].latest_revision.startswith(picked + "@"), parsing


def test_objects_on_one_repository_wait_for_its_first_check_not_on_workers() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0"], f"{A}/other": ["1.0.0"]}, delay=0.05)
    objects = [oci(f"o{i}", f"oci://{A}/app") for i in range(40)]
    objects.append(oci("other", f"oci://{A}/other"))
    with rig(registry=reg, concurrency=2) as r:
        r.engine.sync({"OCIRepository": objects})
        r.until(lambda: r.engine.checks == 41)
        assert reg.peak[A] <= 2  # never more than the two workers, all on distinct work
        assert sorted(c for c in reg.calls if c.startswith("list")) == [
            f"list {A}/app", f"list {A}/other"]  # fmt: skip


def test_a_patcher_bug_neither_sticks_the_target_nor_stops_the_others() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"], f"{A}/other": ["1.0.0", "1.1.0"]})
    kube = FakeKube()
    calls: list[str] = []

    def broken(ref: object, token: str, revision: str) -> bool:
        calls.append(revision)
        if len(calls) == 1:
            raise RuntimeError("a bug, not a PatchError")
        return True

    kube.request = broken  # type: ignore[method-assign]
    with rig(registry=reg, kube=kube) as r:
        objects = {"OCIRepository": [oci("app", f"oci://{A}/app", applied=OLD),
                                     oci("other", f"oci://{A}/other", applied=OLD)]}  # fmt: skip
        assert r.engine.run_pass(objects, timeout=5) == 2
        assert len(calls) == 2  # the second object was patched; run_pass did not hang
        errors = r.store.snapshot().request_errors
        assert sum(errors.values()) == 1


def test_a_failure_alternating_between_two_causes_raises_one_event_per_cause() -> None:
    reg = FakeRegistry(tags={f"{A}/app": ["1.0.0", "1.1.0"]})
    slow = RegistryUnavailable(f"{A}: no complete answer within the 30s deadline")
    pages = RegistryProtocolError(f"{A}/app: more than 1000 pages of tags")
    now = [1_000_000.0]
    with rig(registry=reg, clock=lambda: now[0], default_interval=2, tag_ttl=0.01) as r:
        r.engine.sync({"OCIRepository": [oci("app", f"oci://{A}/app", applied=OLD)]})
        for i in range(6):  # slow, pages, slow, pages, ...
            reg.failures[A] = slow if i % 2 == 0 else pages
            checks = r.engine.checks
            now[0] += 3
            cause = str(reg.failures[A])

            def checked(c: int = checks, m: str = cause) -> bool:
                return r.engine.checks > c and r.row_message("app") == m

            r.until(checked)
        failed = [e for e in r.kube.events if e[1] == "RegistryCheckFailed"]
        assert [e[2] for e in failed] == [str(slow), str(pages)]  # each cause once
        del reg.failures[A]  # it recovers, then fails again: a real change, reported again
        now[0] += 3
        r.until(lambda: r.state("app") != "error")
        reg.failures[A] = slow
        now[0] += 3
        r.until(lambda: r.state("app") == "error")
        failed = [e for e in r.kube.events if e[1] == "RegistryCheckFailed"]
        assert len(failed) == 3
