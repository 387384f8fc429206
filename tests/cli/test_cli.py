"""The `select` and `tags` commands as a user runs them: real process, real registry, exit codes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.push import Pusher
from devenv.registry import RunningRegistry, start_registry
from tests.registry.conftest import USERS, _require


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- select (no I/O) ----------------------------------------------------------------------


def test_select_prints_the_original_tag_text() -> None:
    out = run("select", "--semver", ">=1.0.0", "v1.0.0", "v1.2.0", "1.1.0", "latest", "1.3")
    assert (out.returncode, out.stdout) == (0, "v1.2.0\n")


def test_select_json_and_filter() -> None:
    out = run(
        "select", "--semver", "*", "--semver-filter", "-rc", "--output", "json",
        "1.0.0", "1.1.0-rc.1", "1.1.0",
    )  # fmt: skip
    # `*` keeps no prerelease, and the filter leaves only the prerelease: nothing matches
    assert out.returncode == 1
    assert json.loads(out.stdout) == {"selected": None, "matching": []}
    out = run("select", "--semver", ">=1.0.0-0", "--output", "json", "1.0.0", "1.1.0-rc.1")
    assert out.returncode == 0
    assert json.loads(out.stdout) == {"selected": "1.1.0-rc.1", "matching": ["1.1.0-rc.1", "1.0.0"]}


def test_select_helm_flavor_reads_underscore_as_plus() -> None:
    out = run("select", "--flavor", "helm", "--semver", "1.x", "1.0.0", "1.0.1_build.5", "v1.9.0")
    assert (out.returncode, out.stdout) == (0, "1.0.1_build.5\n")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--semver", ">=1.0.0 <<2"], "range"),
        (["--semver", ">=1.0.0", "--semver-filter", "(unclosed"], "regular expression"),
    ],
)
def test_select_invalid_rule_exits_2_with_a_message(args: list[str], needle: str) -> None:
    out = run("select", *args, "1.0.0")
    assert out.returncode == 2
    assert out.stdout == ""
    assert needle in out.stderr.lower()


def test_select_no_match_exits_1() -> None:
    out = run("select", "--semver", ">=2.0.0", "1.0.0")
    assert (out.returncode, out.stdout) == (1, "")
    assert "no tag matches" in out.stderr


# -- tags (real registry) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    _require("debian")
    with start_registry(
        tmp_path_factory.mktemp("cli"), implementation="debian", auth="htpasswd", users=USERS
    ) as reg:
        with Pusher(reg.base_url, reg.push_headers("group/sub/app")) as push:
            for tag in ("v1.0.0", "v1.1.0", "v2.0.0-rc.1", "latest"):
                push.flux_artifact("group/sub/app", tag, created=1_700_000_000)
        yield reg


def docker_config(tmp_path: Path, host: str, user: str, password: str) -> Path:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


@pytest.mark.registry
def test_tags_lists_and_selects_with_digest(
    basic_registry: RunningRegistry, tmp_path: Path
) -> None:
    cfg = docker_config(tmp_path, basic_registry.host, "alice", USERS["alice"])
    url = f"oci://{basic_registry.host}/group/sub/app"
    out = run("tags", url, "--insecure", "--docker-config", str(cfg), "--semver", "^1.0",
              "--output", "json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["repository"] == f"{basic_registry.host}/group/sub/app"
    assert sorted(report["tags"]) == ["latest", "v1.0.0", "v1.1.0", "v2.0.0-rc.1"]
    assert report["selected"]["tag"] == "v1.1.0"
    assert report["selected"]["digest"].startswith("sha256:")
    with Pusher(basic_registry.base_url, basic_registry.push_headers("group/sub/app")) as push:
        again = push.flux_artifact("group/sub/app", "v1.1.0", created=1_700_000_000)
    assert report["selected"]["digest"] == again.digest  # same content, same digest

    text = run("tags", url, "--insecure", "--docker-config", str(cfg), "--tag", "latest")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-1].startswith("selected: latest sha256:")
    assert sorted(lines[:-1]) == sorted(report["tags"])


@pytest.mark.registry
def test_tags_exit_codes(basic_registry: RunningRegistry, tmp_path: Path) -> None:
    url = f"oci://{basic_registry.host}/group/sub/app"
    wrong = docker_config(tmp_path, basic_registry.host, "alice", "not-the-password")
    out = run("tags", url, "--insecure", "--docker-config", str(wrong))
    assert out.returncode == 3
    assert "auth" in out.stderr and "not-the-password" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1

    good = docker_config(tmp_path, basic_registry.host, "alice", USERS["alice"])
    missing = run("tags", f"oci://{basic_registry.host}/nope", "--insecure",
                  "--docker-config", str(good))  # fmt: skip
    assert missing.returncode == 3 and "not_found" in missing.stderr

    none = run("tags", url, "--insecure", "--docker-config", str(good), "--semver", ">=3")
    assert none.returncode == 1
    bad = run("tags", url, "--insecure", "--semver", "not a range")
    assert bad.returncode == 2
    bad_url = run("tags", "https://example.invalid/x")
    assert bad_url.returncode == 2 and "oci://" in bad_url.stderr
