"""ci/gitlab/notify.yml, the includable GitLab CI template that runs `flux-oci-trigger notify`:
GitLab's CI schema (as vendored by check-jsonschema) accepts its header and its jobs, and its
POSIX sh script passes exactly the arguments its inputs ask for."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import ROOT, require_tool

TEMPLATE = ROOT / "ci" / "gitlab" / "notify.yml"
HIDDEN, VISIBLE = ".flux-oci-trigger-notify", "flux-oci-trigger-notify"
INPUT_KEYS = {"default", "description", "options", "regex", "type"}  # GitLab's spec:inputs
DEFAULTS: dict[str, str | bool] = {
    "refs": "$CI_REGISTRY_IMAGE:$CI_COMMIT_TAG",
    "context": "",
    "all_contexts": False,
    "namespace": "",
    "wait": "",
    "image": "registry.gitlab.com/flux-oci-trigger/flux-oci-trigger:latest",
    "stage": "deploy",
}
PLACEHOLDER = re.compile(r"\$\[\[\s*inputs\.(\w+)\s*\]\]")
CI_ENV = {"CI_REGISTRY_IMAGE": "registry.gitlab.com/group/app", "CI_COMMIT_TAG": "v1.2.3"}
REF = "registry.gitlab.com/group/app:v1.2.3"
DIGEST = "sha256:" + "0123456789abcdef" * 4

Inputs = dict[str, str | bool]


def _texts() -> tuple[str, str]:
    """The header document and the jobs document, as written."""
    header, jobs = re.split(r"^---[ \t]*\n", TEMPLATE.read_text(), flags=re.M)
    return header, jobs


def _header() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_texts()[0])
    return doc


def _jobs(inputs: Inputs) -> dict[str, Any]:
    doc: dict[str, Any] = _interpolate(yaml.safe_load(_texts()[1]), inputs)
    return doc


def _interpolate(node: Any, inputs: Inputs) -> Any:
    """What GitLab does with `$[[ inputs.x ]]`: on the parsed document, a string that is
    one placeholder becomes the value (typed); elsewhere the value's text is inserted."""
    if isinstance(node, dict):
        return {_interpolate(k, inputs): _interpolate(v, inputs) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, inputs) for v in node]
    if not isinstance(node, str):
        return node
    whole = PLACEHOLDER.fullmatch(node)
    if whole:
        return inputs[whole.group(1)]

    def text(m: re.Match[str]) -> str:
        value = inputs[m.group(1)]
        return str(value).lower() if isinstance(value, bool) else value

    return PLACEHOLDER.sub(text, node)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """GitLab's `extends`: mappings merge deeply, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both else value
    return merged


def _resolved(jobs: dict[str, Any]) -> dict[str, Any]:
    """The visible job as GitLab runs it. The schema lets a hidden key hold anything (YAML
    anchors), so only the resolved job has its keys checked."""
    visible = {k: v for k, v in jobs[VISIBLE].items() if k != "extends"}
    return {VISIBLE: _merge(jobs[HIDDEN], visible)}


def _inputs(**overrides: str | bool) -> Inputs:
    """The defaults, overridden; only values GitLab would accept (type, regex)."""
    assert set(overrides) <= set(DEFAULTS)
    declared = _header()["spec"]["inputs"]
    for name, value in overrides.items():
        assert type(value) is type(DEFAULTS[name]), name
        if "regex" in declared[name]:
            assert isinstance(value, str) and re.search(declared[name]["regex"], value), name
    return {**DEFAULTS, **overrides}


def _script(inputs: Inputs) -> str:
    jobs = _jobs(inputs)
    assert jobs[VISIBLE] == {"extends": HIDDEN}
    lines = jobs[HIDDEN]["script"]
    assert all(isinstance(line, str) for line in lines)
    return "\n".join(lines) + "\n"


def _posix_sh() -> str:
    """dash where there is one: a strict POSIX shell, like the image's /bin/sh."""
    found = shutil.which("dash") or shutil.which("sh")
    assert found is not None
    return found


def _check_jsonschema() -> list[str]:
    """check-jsonschema from the dev dependencies, next to this interpreter."""
    require_tool("check-jsonschema", str(Path(sys.executable).with_name("check-jsonschema")))
    return [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.gitlab-ci"]


def test_header_comment_explains_the_include_and_the_agent_access() -> None:
    header = _texts()[0]
    comment = "\n".join(ln for ln in header.splitlines() if ln.startswith("#"))
    assert header.startswith("#")
    for needle in ("include:", "project:", "file: ci/gitlab/notify.yml", "inputs:", "remote:",
                   "ci_access:", "access_as:", "ci_job: {}", "manifests/notify/role.yaml",
                   "gitlab:project:"):  # fmt: skip
        assert needle in comment, needle


def test_header_declares_only_spec_inputs_with_gitlabs_keys() -> None:
    header = _header()
    assert list(header) == ["spec"]
    assert list(header["spec"]) == ["inputs"]
    inputs = header["spec"]["inputs"]
    assert list(inputs) == list(DEFAULTS)
    for name, spec in inputs.items():
        assert isinstance(spec, dict), name
        assert set(spec) <= INPUT_KEYS, name
        assert isinstance(spec["description"], str) and spec["description"], name
        assert spec["default"] == DEFAULTS[name], name
        assert type(spec["default"]) is type(DEFAULTS[name]), name
    assert inputs["all_contexts"]["type"] == "boolean"
    assert {n for n, s in inputs.items() if "regex" in s} == {"context", "namespace", "wait"}
    assert all("type" not in s or s["type"] == "string" for n, s in inputs.items()
               if n != "all_contexts")  # fmt: skip


def test_every_placeholder_names_a_declared_input_and_every_input_is_used() -> None:
    used = set(PLACEHOLDER.findall(_texts()[1]))
    assert used == set(DEFAULTS)
    assert "$[[" not in json.dumps(_jobs(_inputs()))
    assert "$[[" not in _texts()[0]  # GitLab interpolates only the jobs


def test_jobs_run_the_image_without_its_entrypoint_and_extend_the_hidden_job() -> None:
    jobs = _jobs(_inputs(image="registry.example.com/fot:1.0", stage="notify"))
    assert set(jobs) == {HIDDEN, VISIBLE}
    assert jobs[VISIBLE] == {"extends": HIDDEN}
    job = jobs[HIDDEN]
    assert job["image"] == {"name": "registry.example.com/fot:1.0", "entrypoint": [""]}
    assert job["stage"] == "notify"
    assert job["script"][-1] == 'flux-oci-trigger "$@"'


def test_gitlab_ci_schema_accepts_the_header_and_the_jobs(tmp_path: Path) -> None:
    header, jobs = _texts()
    everything = _inputs(
        context="g/agents:prod", namespace="flux-system", wait="10m",
        image="registry.example.com/fot:1.0", stage="notify",
    )  # fmt: skip
    files = {
        "header.yml": header,  # as written: ruamel, unlike PyYAML, rejects duplicate keys
        "jobs-raw.yml": jobs,
        "jobs-defaults.json": json.dumps(_jobs(_inputs())),
        "resolved-defaults.json": json.dumps(_resolved(_jobs(_inputs()))),
        "resolved-everything.json": json.dumps(_resolved(_jobs(everything))),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = subprocess.run(
        [*_check_jsonschema(), *(str(tmp_path / name) for name in files)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_gitlab_ci_schema_is_not_vacuous(tmp_path: Path) -> None:
    header = _header()
    header["spec"]["inputs"]["wait"]["type"] = "duration"
    jobs = _resolved(_jobs(_inputs()))
    jobs[VISIBLE]["image"]["entrypoint"] = []
    (tmp_path / "header.json").write_text(json.dumps(header))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    out = subprocess.run(
        [*_check_jsonschema(), str(tmp_path / "header.json"), str(tmp_path / "jobs.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "Schema validation errors" in out.stdout, out.stdout + out.stderr
    for where in (
        "header.json::$.spec.inputs.wait:",
        "$.spec.inputs.wait.type: 'duration'",
        f"jobs.json::$['{VISIBLE}'].image:",
        f"$['{VISIBLE}'].image.entrypoint: []",
    ):
        assert where in out.stdout, out.stdout


@pytest.mark.parametrize(
    "inputs",
    [
        _inputs(),
        _inputs(context="g/agents:prod", namespace="flux-system", wait="10m"),
        _inputs(refs="oci://r.example:5000/a/b:1 r.example/c:2@" + DIGEST, context="a b'c;$x*"),
    ],
    ids=["defaults", "context-namespace-wait", "odd-values"],
)
def test_script_is_posix_sh(inputs: Inputs) -> None:
    out = subprocess.run(
        [_posix_sh(), "-n"], input=_script(inputs), capture_output=True, text=True, timeout=10
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", ["context", "namespace", "wait"])
def test_quoted_values_cannot_end_or_escape_their_double_quotes(name: str) -> None:
    regex = _header()["spec"]["inputs"][name]["regex"]
    for fine in ("", "group/sub.group/agent-config:prod-1", "flux-system", "1h30m", "$AGENT"):
        assert re.search(regex, fine), fine
    for bad in ('a"b', "a\\b", "a`id`b", '"', "x\\"):
        assert not re.search(regex, bad), bad


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    """PATH with a flux-oci-trigger that prints its arguments, one a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "flux-oci-trigger"
    stub.write_text('#!/bin/sh\nfor arg; do printf "%s\\n" "$arg"; done\nexit "${STUB_RC:-0}"\n')
    stub.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def _run(script: str, path: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The script as the runner runs it: one shell, stopping at the first failure."""
    return subprocess.run(
        [_posix_sh(), "-e"], input=script, capture_output=True, text=True, timeout=10,
        cwd=cwd, env={"PATH": path, **CI_ENV, "AGENT": "g/agents", **env},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (_inputs(), ["notify", REF]),
        (
            _inputs(context="group/agent-config:production", namespace="flux-system", wait="5m"),
            ["notify", REF, "--context", "group/agent-config:production",
             "--namespace", "flux-system", "--wait", "5m"],
        ),
        (_inputs(all_contexts=True), ["notify", REF, "--all-contexts"]),
        (_inputs(all_contexts=False, context=""), ["notify", REF]),
        (
            _inputs(refs="oci://$CI_REGISTRY_IMAGE/chart:$CI_COMMIT_TAG  $CI_REGISTRY_IMAGE:"
                         "$CI_COMMIT_TAG@" + DIGEST + " r.example:5000/x/*:1"),
            ["notify", f"oci://{CI_ENV['CI_REGISTRY_IMAGE']}/chart:v1.2.3", f"{REF}@{DIGEST}",
             "r.example:5000/x/*:1"],
        ),
        (
            _inputs(context="$AGENT:prod", namespace="a b'c;*", wait="$NO_SUCH_VARIABLE"),
            ["notify", REF, "--context", "g/agents:prod", "--namespace", "a b'c;*"],
        ),
    ],
    ids=["defaults", "context-namespace-wait", "all-contexts", "false-and-empty", "several-refs",
         "variables-and-odd-values"],
)  # fmt: skip
def test_script_passes_the_arguments_the_inputs_ask_for(
    stub_path: str, tmp_path: Path, inputs: Inputs, expected: list[str]
) -> None:
    (tmp_path / "r.example:5000" / "x" / "y:1").mkdir(parents=True)  # what a glob would match
    (tmp_path / "a b'c;z").touch()
    out = _run(_script(inputs), stub_path, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected


def test_script_fails_when_notify_fails(stub_path: str, tmp_path: Path) -> None:
    out = _run(_script(_inputs()), stub_path, tmp_path, STUB_RC="3")
    assert out.returncode == 3
