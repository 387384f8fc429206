"""What a newcomer reads first: ``--help`` shows every setting's default and variable,
and a broken Kubernetes configuration names the file and the reason (exit 4)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

import exporter.cli.main as cli
from exporter.settings import ENV_PREFIX, Settings, default_text, duration_text


def _help(command: str) -> str:
    result = CliRunner().invoke(cli.main, [command, "--help"], terminal_width=4000)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_help_names_every_setting_with_its_variable_and_default() -> None:
    text = _help("run")
    for field in fields(Settings):
        assert f"{ENV_PREFIX}{field.name.upper()}" in text, field.name
    assert "--registry-concurrency N" in text
    assert "--interval DURATION" in text
    assert "FLUX_OCI_TRIGGER_INTERVAL; default: 1m]" in text
    assert "FLUX_OCI_TRIGGER_TAG_TTL; default: 1m]" in text
    assert "FLUX_OCI_TRIGGER_LISTEN; default: 0.0.0.0:9798]" in text


def test_check_takes_the_settings_that_change_what_it_reports() -> None:
    text = _help("check")
    for flag in ("--annotation-prefix", "--tag-parsing", "--watch-label-selector"):
        assert flag in text


@pytest.mark.parametrize(("command", "codes"), [("select", "012"), ("tags", "0123")])
def test_select_and_tags_help_list_their_exit_codes(command: str, codes: str) -> None:
    text = _help(command)
    assert "Exit codes:" in text
    for code in codes:
        assert f"\n    {code}  " in text, code


def test_flags_reach_the_settings_only_when_given_and_variables_are_left_to_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    def capture(**flags: object) -> object:
        seen.update({k: v for k, v in flags.items() if v is not None})
        raise SystemExit(0)

    monkeypatch.setattr(cli, "_settings", capture)
    env = {f"{ENV_PREFIX}INTERVAL": "5m", f"{ENV_PREFIX}DRY_RUN": "true"}
    assert CliRunner().invoke(cli.main, ["run"], env=env).exit_code == 0
    assert seen == {}
    args = ["run", "--dry-run", "--no-leader-elect", "--namespace", "a", "--interval", "2m"]
    assert CliRunner().invoke(cli.main, args).exit_code == 0
    assert seen == {"dry_run": True, "leader_elect": False, "namespaces": ("a",), "interval": "2m"}


def test_a_variable_error_names_the_variable() -> None:
    env = {f"{ENV_PREFIX}INTERVAL": "soon"}
    result = CliRunner().invoke(cli.main, ["check"], env=env)
    assert result.exit_code == 2
    assert f"{ENV_PREFIX}INTERVAL: " in result.output


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(60.0, "1m"), (90.0, "1m30s"), (3600.0, "1h"), (0.5, "500ms"), (2.0, "2s"), (900.0, "15m")],
)
def test_durations_read_as_flags_take_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_defaults_read_as_flags_take_them() -> None:
    assert default_text(True) == "true"
    assert default_text("") == '""'


def _check(tmp_path: Path, kubeconfig: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--kubeconfig", kubeconfig],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip


def test_a_missing_kubeconfig_is_named_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "config"
    out = _check(tmp_path, str(missing))
    assert out.returncode == 4, out.stderr
    assert f"kubeconfig {missing}: no such file" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_invalid_kubeconfig_is_named_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    out = _check(tmp_path, str(broken))
    assert out.returncode == 4, out.stderr
    message = out.stderr.strip()
    assert f"kubeconfig {broken}: " in message
    assert message.rstrip().split(": ")[-1] not in ("", "ConfigException"), message


def test_check_refuses_an_unknown_fail_on_state_before_connecting() -> None:
    result = CliRunner().invoke(cli.main, ["check", "--fail-on", "error,broken\x1b[2J"])
    assert result.exit_code == 2
    assert "--fail-on: unknown state(s) broken\\x1b[2J; one of" in result.output
