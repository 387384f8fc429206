"""The click options follow the settings' declarations: a flag and its variable give the
same value, --help shows each declaration, and a flag can take more spellings."""

from __future__ import annotations

import dataclasses
import re

import click
import pytest
from click.testing import CliRunner

import exporter.cli.main as cli
from exporter.cli.options import option, setting_options
from exporter.settings import SETTINGS, Settings, from_sources

# per setting: the command line and the variable's text for one value (not the default)
SAMPLES: dict[str, tuple[list[str], str]] = {
    "kubeconfig": (["--kubeconfig", "/etc/kube/config"], "/etc/kube/config"),
    "namespaces": (["--namespace", "apps", "--namespace", "flux-system"], "apps,flux-system"),
    "interval": (["--interval", "2m"], "2m"),
    "min_interval": (["--min-interval", "30"], "30"),
    "tag_ttl": (["--tag-ttl", "1m30s"], "1m30s"),
    "dry_run": (["--dry-run"], "true"),
    "once": (["--once"], "yes"),
    "annotation_prefix": (["--annotation-prefix", "example.com/"], "example.com/"),
    "log_format": (["--log-format", "json"], "json"),
    "log_level": (["--log-level", "debug"], "debug"),
    "listen": (["--listen", "[::1]:8080"], "[::1]:8080"),
    "events_listen": (["--events-listen", ":9799"], ":9799"),
    "gitlab_registry": (["--gitlab-registry", "gitlab.example.com"], "gitlab.example.com"),
    "events_addr": (["--events-addr", "http://nc.flux-system.svc/"], "http://nc.flux-system.svc/"),
    "watch_label_selector": (["--watch-label-selector", "shard=s1"], "shard=s1"),
    "leader_elect": (["--leader-elect"], "on"),
    "leader_election_namespace": (["--leader-election-namespace", "ops"], "ops"),
    "leader_election_id": (["--leader-election-id", "lease"], "lease"),
    "leader_election_lease_duration": (["--leader-election-lease-duration", "20s"], "20s"),
    "leader_election_renew_deadline": (["--leader-election-renew-deadline", "8s"], "8s"),
    "leader_election_retry_period": (["--leader-election-retry-period", "1s"], "1s"),
    "tag_parsing": (["--tag-parsing", "flux-2.6"], "flux-2.6"),
    "event_gap": (["--event-gap", "500ms"], "500ms"),
    "expedite_window": (["--expedite-window", "1h"], "1h"),
    "patch_rate": (["--patch-rate", "0.5"], "0.5"),
    "registry_concurrency": (["--registry-concurrency", "3"], "3"),
    "stuck_backoff_min": (["--stuck-backoff-min", "2m"], "2m"),
    "stuck_backoff_max": (["--stuck-backoff-max", "2h"], "2h"),
    "notify_watch": (["--no-notify-watch"], "false"),
    "notify_everywhere": (["--notify-everywhere", "platform"], "platform"),
    "object_level_workload_identity": (["--object-level-workload-identity"], "on"),
    "default_service_account": (["--default-service-account", "flux"], "flux"),
}
# what a setting needs beside it to be valid: (flags, variables)
COMPANIONS = {
    "default_service_account": (
        ["--object-level-workload-identity"],
        {"FLUX_OCI_TRIGGER_OBJECT_LEVEL_WORKLOAD_IDENTITY": "on"},
    ),
}


def _flags(args: list[str]) -> dict[str, object]:
    """What a command made with ``setting_options()`` hands to the settings."""
    seen: dict[str, object] = {}

    @click.command()
    @setting_options()
    def command(**flags: object) -> None:
        seen.update(flags)

    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    return {k: v for k, v in seen.items() if v is not None}


def test_every_setting_has_a_sample() -> None:
    assert set(SAMPLES) == {s.name for s in SETTINGS}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_a_flag_and_its_variable_give_the_same_setting(name: str) -> None:
    args, text = SAMPLES[name]
    flags, variables = COMPANIONS.get(name, ([], {}))
    declared = next(s for s in SETTINGS if s.name == name)
    from_flag = from_sources(_flags([*args, *flags]), {})
    from_variable = from_sources({}, {declared.variable: text, **variables})
    assert from_flag == from_variable
    assert getattr(from_flag, name) != getattr(Settings(), name)


def test_a_flag_not_given_reaches_the_settings_as_none() -> None:
    assert _flags([]) == {}


def test_help_shows_each_declaration() -> None:
    result = CliRunner().invoke(cli.main, ["run", "--help"], terminal_width=4000)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # click may put the help below a long flag
    for s in SETTINGS:
        flag, extra = re.escape(s.origin), re.escape(f"[env var: {s.variable}; default: {s.shown}]")
        spellings = rf"{flag}(?:, --\S+)*"  # then Flux's spellings, where they exist
        assert re.search(rf" {spellings}(?: \S+){{0,3}} {re.escape(s.help)} {extra}", text), s.name


def test_a_flag_can_take_more_spellings() -> None:
    by_name = {s.name: s for s in SETTINGS}
    listen = dataclasses.replace(by_name["listen"], aliases=("--metrics-addr",))
    elect = dataclasses.replace(by_name["leader_elect"], aliases=("--enable-leader-election",))

    @click.command()
    @option(listen)
    @option(elect)
    def command(**flags: object) -> None:
        click.echo(repr(sorted(flags.items())))

    args = ["--metrics-addr", "127.0.0.1:8080", "--enable-leader-election"]
    result = CliRunner().invoke(command, args)
    assert result.output.strip() == repr([("leader_elect", True), ("listen", "127.0.0.1:8080")])
    usage = CliRunner().invoke(command, ["--help"], terminal_width=4000).output
    assert "--listen, --metrics-addr TEXT" in usage
    assert "--leader-elect, --enable-leader-election / --no-leader-elect" in usage


def test_an_unknown_setting_has_no_options() -> None:
    with pytest.raises(ValueError, match="no such setting: colour"):
        setting_options("interval", "colour")
