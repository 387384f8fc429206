from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.decision import Decision, Hold, decide
from exporter.core.memory import Memory, Request
from exporter.core.observation import Fresh, NoMatch, RegistryFailure
from exporter.core.timestamps import format_request_token, parse_timestamp
from exporter.flux.annotations import Options
from exporter.flux.revision import AppliedRevision
from exporter.flux.targets import Access, SourceProblem, Target, TargetId, TargetKind, WatchRule
from exporter.model import ErrorReason, Flavor, RepositoryRef, State, TagRule

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
EMPTY = Memory()


def oci(
    rule: WatchRule | None = None,
    applied: tuple[str | None, str | None] | None = ("1.0.0", D1),
    **changes: object,
) -> Target:
    target = Target(
        id=TargetId(TargetKind.OCI_REPOSITORY, "apps", "podinfo"),
        api_version="source.toolkit.fluxcd.io/v1",
        plural="ocirepositories",
        repository=RepositoryRef("ghcr.io", "org/podinfo"),
        rule=rule or WatchRule.semver(TagRule(">=1.0.0")),
        options=Options(interval=60),
        access=Access(),
        applied=None if applied is None else AppliedRevision(*applied, None, "raw"),
    )
    return replace(target, **changes)  # type: ignore[arg-type]


def chart(applied: str, *, values_files: bool = False, **changes: object) -> Target:
    target = replace(
        oci(rule=WatchRule.semver(TagRule("*", None, Flavor.HELM))),
        id=TargetId(TargetKind.HELM_CHART, "flux-system", "podinfo"),
        plural="helmcharts",
        applied=AppliedRevision(None, None, applied, applied),
        has_values_files=values_files,
    )
    return replace(target, **changes)  # type: ignore[arg-type]


def requested(target: Target, d: Decision, now: float) -> tuple[Target, Memory]:
    """What the caller does after a successful patch: annotations change, memory kept."""
    assert d.should_request and d.request_token and d.memory_after_request
    assert parse_timestamp(d.request_token) == pytest.approx(now, abs=1e-6)
    return (
        replace(target, requested_at=d.request_token, requested_revision=d.target_revision),
        d.memory_after_request,
    )


NEW = Fresh("1.1.0", D2, versions_behind=1)


def test_source_problems() -> None:
    tid = TargetId(TargetKind.OCI_REPOSITORY, "a", "b")
    config = SourceProblem(tid, "v1", "ocirepositories", ErrorReason.CONFIG, ("x", "y"))
    d = decide(config, None, EMPTY, T0)
    assert (d.state, d.error_reason, d.message) == (State.CONFIG_ERROR, ErrorReason.CONFIG, "x; y")
    unsupported = replace(config, reason=ErrorReason.UNSUPPORTED)
    assert decide(unsupported, None, EMPTY, T0).state is State.UNSUPPORTED
    assert not decide(config, NEW, EMPTY, T0).should_request


def test_suspended_and_pinned_never_request() -> None:
    d = decide(oci(suspended=True), NEW, EMPTY, T0)
    assert d.state is State.SUSPENDED and not d.should_request
    d = decide(oci(rule=WatchRule.pinned(digest=D1)), None, EMPTY, T0)
    assert d.state is State.PINNED and not d.should_request and D1 in d.message
    d = decide(oci(rule=WatchRule.pinned(digest=D1), suspended=True), None, EMPTY, T0)
    assert d.state is State.SUSPENDED


def test_an_observation_is_needed_otherwise() -> None:
    with pytest.raises(ValueError):
        decide(oci(), None, EMPTY, T0)


def test_no_match() -> None:
    d = decide(oci(), NoMatch(), EMPTY, T0)
    assert d.state is State.NO_MATCH and not d.should_request and d.lag_seconds == 0


def test_up_to_date() -> None:
    d = decide(oci(), Fresh("1.0.0", D1), EMPTY, T0)
    assert d.state is State.UP_TO_DATE and d.target_revision == f"1.0.0@{D1}"
    assert (d.lag_seconds, d.versions_behind, d.should_request) == (0, 0, False)


def test_behind_requests_once() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    assert d.state is State.BEHIND and d.target_revision == f"1.1.0@{D2}"
    assert d.should_request and d.why_not is None and d.versions_behind == 1
    target, memory = requested(target, d, T0)
    again = decide(target, NEW, memory, T0 + 5)
    assert again.state is State.PENDING and not again.should_request
    assert again.why_not is Hold.ALREADY_REQUESTED and again.lag_seconds == 5


def test_our_patch_not_yet_visible_is_pending() -> None:
    target = oci(requested_at="old", last_handled_reconcile_at="old")
    d = decide(target, NEW, EMPTY, T0)
    memory = d.memory_after_request
    assert memory is not None
    again = decide(target, NEW, memory, T0 + 1)  # the watch has not delivered our patch yet
    assert again.state is State.PENDING and not again.should_request


def test_restart_with_annotation_does_not_request_again() -> None:
    target = oci(
        requested_revision=f"1.1.0@{D2}",
        requested_at=format_request_token(T0),
        last_handled_reconcile_at="2020-01-01T00:00:00Z",
    )
    d = decide(target, NEW, EMPTY, T0 + 3600)
    assert d.state is State.PENDING and not d.should_request


def test_mutable_tag_moved() -> None:
    target = oci(rule=WatchRule.mutable_tag("latest"), applied=("latest", D1))
    assert decide(target, Fresh("latest", D1), EMPTY, T0).state is State.UP_TO_DATE
    d = decide(target, Fresh("latest", D2), EMPTY, T0)
    assert d.state is State.BEHIND and d.should_request and d.versions_behind == 1
    assert d.target_revision == f"latest@{D2}"


def test_semver_tag_repushed_is_behind() -> None:
    d = decide(oci(), Fresh("1.0.0", D2), EMPTY, T0)
    assert d.state is State.BEHIND and d.versions_behind == 1


def test_never_applied_is_behind() -> None:
    # Flux reconciled the object (and failed, say because no tag matched then)
    tried = oci(applied=None, ready=False)
    d = decide(tried, Fresh("1.0.0", D1), EMPTY, T0)
    assert d.state is State.BEHIND and d.should_request


def test_tag_pattern_holds_back_but_lag_is_reported() -> None:
    target = oci(options=Options(interval=60, tag_pattern=r"^1\.0\."))
    d = decide(target, NEW, EMPTY, T0)
    assert d.state is State.BEHIND and not d.should_request and d.why_not is Hold.TAG_PATTERN
    d2 = decide(target, NEW, d.memory, T0 + 30)
    assert d2.lag_seconds == 30 and not d2.should_request


def test_min_age() -> None:
    target = oci(options=Options(interval=60, min_age=120))
    d = decide(target, NEW, EMPTY, T0)
    assert not d.should_request and d.why_not is Hold.MIN_AGE
    d = decide(target, NEW, d.memory, T0 + 119)
    assert not d.should_request and d.why_not is Hold.MIN_AGE
    d = decide(target, NEW, d.memory, T0 + 120)
    assert d.should_request and d.lag_seconds == 120


def test_min_age_counts_from_creation_when_known() -> None:
    target = oci(options=Options(interval=60, min_age=120))
    d = decide(target, replace(NEW, created_at=T0 - 200), EMPTY, T0)
    assert d.should_request and d.lag_seconds == 200
    future = decide(target, replace(NEW, created_at=T0 + 50), EMPTY, T0)
    assert future.why_not is Hold.MIN_AGE and future.lag_seconds == 0


def test_lag_counts_from_oldest_unapplied_artifact() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    newer = Fresh("1.2.0", D3, versions_behind=2)
    d = decide(target, newer, d.memory, T0 + 100)
    assert d.lag_seconds == 100 and d.versions_behind == 2 and d.should_request
    # Flux caught up to 1.1.0 only: the lag now runs from when 1.2.0 appeared
    caught_up = oci(applied=("1.1.0", D2))
    d = decide(caught_up, newer, d.memory, T0 + 150)
    assert d.lag_seconds == 50
    done = decide(oci(applied=("1.2.0", D3)), newer, d.memory, T0 + 160)
    assert done.memory == replace(EMPTY, last_fresh=newer)  # nothing left but the last look


def stuck_target(target: Target, token: str) -> Target:
    """Flux handled our request and failed: lastHandledReconcileAt echoes it."""
    return replace(
        target, last_handled_reconcile_at=token, ready=False, ready_reason="OCIArtifactPullFailed"
    )


def test_stuck_backs_off_from_one_minute_to_one_hour() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    target, memory = requested(target, d, T0)
    target = stuck_target(target, target.requested_at or "")
    now, last, delays = T0, T0, []
    while now < T0 + 6 * 3600:
        now += 1
        d = decide(target, NEW, memory, now)
        assert d.state is State.STUCK and "OCIArtifactPullFailed" in d.message
        if d.should_request:
            delays.append(now - last)
            last = now
            target, memory = requested(target, d, now)
            target = stuck_target(target, target.requested_at or "")
        else:
            assert d.why_not is Hold.BACKOFF
    assert delays[:7] == [60, 120, 240, 480, 960, 1920, 3600]
    assert set(delays[6:]) == {3600}


def test_stuck_after_restart_uses_the_annotation_time() -> None:
    token = format_request_token(T0)
    target = oci(requested_revision=f"1.1.0@{D2}", requested_at=token)
    target = stuck_target(target, token)
    early = decide(target, NEW, EMPTY, T0 + 59)
    assert early.state is State.STUCK and early.why_not is Hold.BACKOFF
    late = decide(target, NEW, EMPTY, T0 + 60)
    assert late.should_request and late.memory_after_request is not None
    assert late.memory_after_request.request == Request(
        f"1.1.0@{D2}", T0 + 60, late.request_token or "", 2
    )


def test_handled_someone_elses_newer_request_counts() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    target, memory = requested(target, d, T0)
    theirs = format_request_token(T0 + 10)
    target = replace(target, requested_at=theirs, last_handled_reconcile_at=theirs)
    assert decide(target, NEW, memory, T0 + 20).state is State.STUCK


def test_applied_after_request_is_reported_once() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    target, memory = requested(target, d, T0)
    applied = replace(target, applied=AppliedRevision("1.1.0", D2, None, "raw"))
    applied = replace(applied, artifact_updated_at="2027-01-15T08:00:42Z")
    d = decide(applied, NEW, memory, T0 + 90)
    assert d.state is State.UP_TO_DATE and d.applied_after_request_seconds == 42
    assert decide(applied, NEW, d.memory, T0 + 150).applied_after_request_seconds is None


def test_applied_after_request_without_update_time_uses_now() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    target, memory = requested(target, d, T0)
    applied = replace(target, applied=AppliedRevision("1.1.0", D2, None, "raw"))
    assert decide(applied, NEW, memory, T0 + 30).applied_after_request_seconds == 30


def test_no_report_when_something_else_was_applied() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    target, memory = requested(target, d, T0)
    newer = Fresh("1.2.0", D3)
    applied = oci(applied=("1.2.0", D3))
    assert decide(applied, newer, memory, T0 + 30).applied_after_request_seconds is None


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        (ErrorReason.AUTH, State.ERROR),
        (ErrorReason.RATE_LIMITED, State.ERROR),
        (ErrorReason.CONFIG, State.CONFIG_ERROR),
        (ErrorReason.UNSUPPORTED, State.UNSUPPORTED),
    ],
)
def test_registry_failure(reason: ErrorReason, state: State) -> None:
    d = decide(oci(), RegistryFailure(reason, "401 from ghcr.io"), EMPTY, T0)
    assert (d.state, d.error_reason, d.should_request) == (state, reason, False)
    assert d.message == "401 from ghcr.io"


def test_registry_failure_keeps_the_lag_of_the_last_known_artifact() -> None:
    target = oci()
    d = decide(target, NEW, EMPTY, T0)
    failing = RegistryFailure(ErrorReason.UNAVAILABLE, last_known=NEW)
    d = decide(target, failing, d.memory, T0 + 300)
    assert d.state is State.ERROR and d.lag_seconds == 300 and not d.should_request
    assert d.why_not is Hold.REGISTRY_ERROR and d.versions_behind == 1


def test_helm_chart_versions() -> None:
    fresh = Fresh("6.5.1_build.2", chart_version="6.5.1+build.2", versions_behind=1)
    d = decide(chart("6.5.1+build.2"), fresh, EMPTY, T0)
    assert d.state is State.UP_TO_DATE and d.target_revision == "6.5.1+build.2"
    d = decide(chart("6.5.0"), fresh, EMPTY, T0)
    assert d.state is State.BEHIND and d.should_request
    # with valuesFiles Flux reports 6.5.1+<generation>, read back as 6.5.1
    assert decide(chart("6.5.1", values_files=True), fresh, EMPTY, T0).state is State.UP_TO_DATE


def test_helm_tag_pattern_sees_the_chart_version() -> None:
    target = chart("6.5.0", options=Options(interval=60, tag_pattern=r"\+build"))
    fresh = Fresh("6.5.1_build.2", chart_version="6.5.1+build.2")
    assert decide(target, fresh, EMPTY, T0).should_request


@pytest.mark.parametrize(
    ("now", "token"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (1.5, "1970-01-01T00:00:01.5Z"),
        (1_795_518_630.25, "2026-11-24T11:10:30.25Z"),
        (1_795_518_630.123456, "2026-11-24T11:10:30.123456Z"),
    ],
)
def test_request_token(now: float, token: str) -> None:
    assert format_request_token(now) == token


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-11-24T10:00:00.123456789Z", 1_795_514_400.123456789),
        ("2026-11-24T11:00:00+01:00", 1_795_514_400),
        ("2026-11-24T09:30:00-00:30", 1_795_514_400),
        ("2026-11-24t10:00:00z", 1_795_514_400),
    ],
)
def test_parse_timestamp(text: str, seconds: float) -> None:
    assert parse_timestamp(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "text", [None, "", "now", "2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24 10:00Z"]
)
def test_unparseable_timestamps(text: str | None) -> None:
    assert parse_timestamp(text) is None


@given(st.floats(0, 4_102_444_800, allow_nan=False))
def test_token_round_trip(now: float) -> None:
    token = format_request_token(now)
    assert token.endswith("Z") and not token.endswith(".Z") and ".0Z" not in token[-3:]
    assert parse_timestamp(token) == pytest.approx(now, abs=1e-6)


@given(st.text(max_size=40))
def test_parse_timestamp_never_raises(text: str) -> None:
    parse_timestamp(text)


def test_a_new_object_flux_has_not_reconciled_yet_gets_no_request() -> None:
    """Flux reconciles a new object on its own; a request then would only be noise."""
    new = oci(applied=None)
    decision = decide(new, NEW, EMPTY, T0)
    assert decision.state is State.BEHIND
    assert not decision.should_request and decision.why_not is Hold.FIRST_RECONCILE
    failed_first_pull = replace(new, ready=False)
    assert decide(failed_first_pull, NEW, EMPTY, T0).should_request


def test_lead_time_runs_from_first_seen_to_flux_applying() -> None:
    target = oci()
    behind = decide(target, NEW, EMPTY, T0)  # 1.1.0 first seen now
    target, memory = requested(target, behind, T0)
    memory = decide(target, NEW, memory, T0 + 25).memory  # still pending
    applied = replace(target, applied=AppliedRevision("1.1.0", D2, None, "raw"),
                      artifact_updated_at="2027-01-15T08:00:42Z")  # fmt: skip
    d = decide(applied, NEW, memory, T0 + 90)
    assert d.applied_after_seen_seconds == 42  # to lastUpdateTime, not to this pass
    assert decide(applied, NEW, d.memory, T0 + 150).applied_after_seen_seconds is None


def test_lead_time_starts_at_creation_when_known_and_needs_a_first_sighting() -> None:
    created = replace(NEW, created_at=T0 - 100)
    memory = decide(oci(), created, EMPTY, T0).memory
    applied = oci(applied=("1.1.0", D2))
    assert decide(applied, created, memory, T0 + 30).applied_after_seen_seconds == 130
    # applied before this process ever saw it behind: nothing to report
    assert decide(applied, created, EMPTY, T0).applied_after_seen_seconds is None


def test_lead_time_is_for_the_applied_artifact_not_the_oldest_waiting() -> None:
    memory = decide(oci(), NEW, EMPTY, T0).memory  # 1.1.0 at T0
    newer = Fresh("1.2.0", D3, versions_behind=2)
    memory = decide(oci(), newer, memory, T0 + 60).memory  # 1.2.0 at T0 + 60
    d = decide(oci(applied=("1.2.0", D3)), newer, memory, T0 + 100)
    assert d.applied_after_seen_seconds == 40
