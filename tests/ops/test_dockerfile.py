"""The Dockerfile, read statically (no image is built here): base, user, entrypoint, context."""

from __future__ import annotations

import fnmatch
import json
import tomllib

from tests.ops.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_multi_stage_on_python_3_11_slim() -> None:
    bases = [args.split()[0] for op, args in _instructions() if op == "FROM"]
    assert len(bases) >= 2
    assert all(base == "python:3.11-slim" for base in bases)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_final_stage_runs_the_cli_as_uid_65532() -> None:
    final = dict(_final_stage())
    assert final["USER"] in ("65532", "65532:65532")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(final["ENTRYPOINT"]) == ["flux-oci-trigger"]
    assert "flux-oci-trigger" in scripts
    assert json.loads(final["CMD"]) == ["run"]
    assert final["EXPOSE"] == "9798 9799"  # metrics; push events when enabled


def test_final_stage_copies_only_the_built_environment() -> None:
    copies = [args for op, args in _final_stage() if op == "COPY"]
    assert copies and all(args.startswith("--from=") for args in copies)
    assert not [args for op, args in _final_stage() if op == "RUN"], "nothing built as root"


def _ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(
            parts[-1], pattern
        ):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_build_copies_and_nothing_secret() -> None:
    sources = []
    for op, args in _instructions():
        if op == "COPY" and not args.startswith("--from="):
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source.rstrip("/")), source
    assert not _ignored("exporter/cli.py")
    for private in (".git/config", ".venv/bin/python", "tests/ops/conftest.py",
                    "exporter/__pycache__/cli.cpython-311.pyc", ".dev-env/kubeconfig"):  # fmt: skip
        assert _ignored(private), private
