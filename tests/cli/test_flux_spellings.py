"""Flux's controller flags, accepted where the meaning is the same: an operator's muscle
memory (``--metrics-addr``, ``--enable-leader-election``, ``--log-encoding``,
``--log-level warn``, the lease timing flags) works as it does on Flux."""

from __future__ import annotations

import logging

import click
import pytest
from click.testing import CliRunner

from exporter.cli.options import setting_options
from exporter.settings import Address, Settings, SettingsError, from_sources


def settings(*args: str, env: dict[str, str] | None = None) -> Settings:
    seen: dict[str, object] = {}

    @click.command()
    @setting_options()
    def command(**flags: object) -> None:
        seen.update({k: v for k, v in flags.items() if v is not None})

    result = CliRunner().invoke(command, list(args))
    assert result.exit_code == 0, result.output
    return from_sources(seen, env or {})


def test_metrics_addr_is_listen() -> None:
    assert settings("--metrics-addr", ":8080").listen == Address("0.0.0.0", 8080)


def test_enable_leader_election_is_leader_elect() -> None:
    assert settings("--enable-leader-election").leader_elect is True


@pytest.mark.parametrize(("given", "kept"), [("json", "json"), ("console", "text")])
def test_log_encoding_is_log_format(given: str, kept: str) -> None:
    assert settings("--log-encoding", given).log_format == kept
    assert from_sources({}, {"FLUX_OCI_TRIGGER_LOG_FORMAT": given}).log_format == kept


def test_warn_is_a_log_level_and_means_warning() -> None:
    level = settings("--log-level", "warn").log_level
    assert logging.getLevelName(level.upper()) == logging.WARNING


def test_the_lease_timing_flags_have_fluxs_names() -> None:
    s = settings(
        "--leader-election-lease-duration", "35s",
        "--leader-election-renew-deadline", "30s",
        "--leader-election-retry-period", "5s",
    )  # fmt: skip
    assert (s.leader_election_lease_duration, s.leader_election_renew_deadline,
            s.leader_election_retry_period) == (35.0, 30.0, 5.0)  # fmt: skip


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [("10s", "10s", "2s"), ("15s", "10s", "9s"), ("15500ms", "10s", "2s"), ("15s", "10s", "0.5s")],
)
def test_unsafe_lease_timings_are_refused(lease: str, renew: str, retry: str) -> None:
    env = {
        "FLUX_OCI_TRIGGER_LEADER_ELECTION_LEASE_DURATION": lease,
        "FLUX_OCI_TRIGGER_LEADER_ELECTION_RENEW_DEADLINE": renew,
        "FLUX_OCI_TRIGGER_LEADER_ELECTION_RETRY_PERIOD": retry,
    }
    with pytest.raises(SettingsError) as failed:
        from_sources({}, env)
    assert any("lease duration > renew deadline" in p for p in failed.value.problems)
