"""The Dockerfile, read statically (tests/image builds and runs it): base, lock, user,
entrypoint, context."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from devenv.image import LEFT_OUT, build_only
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


def test_built_on_an_exact_python_3_11_slim_and_run_from_scratch() -> None:
    steps = _instructions()
    first_from = next(i for i, (op, _) in enumerate(steps) if op == "FROM")
    args = dict(a.split("=", 1) for op, a in steps[:first_from] if op == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["BASE_IMAGE"])
    bases = [a.split()[0] for op, a in steps if op == "FROM"]
    # the build runs on the base (scripts/build-image swaps it); the image has only what
    # the build stage assembled from it
    assert bases == ["${BASE_IMAGE}", "scratch"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    runs = " ".join(a for op, a in steps if op == "RUN")
    assert not re.search(r"(^|[\s/])python(\s|$)", runs), "python3: Debian has no `python`"
    # the root filesystem is assembled by the environment's own interpreter, isolated
    # (-I: the source tree in the working directory must not shadow the installed package)
    assert "/opt/flux-oci-trigger/bin/python3 -I rootfs.py --busybox" in runs


def test_dependencies_come_from_the_lock_checked_by_hash() -> None:
    runs = [a for op, a in _instructions() if op == "RUN"]
    assert any("--require-hashes" in r and "-r requirements.lock" in r for r in runs)
    assert all("--no-deps" in r for r in runs if "pip install" in r)
    lock = (ROOT / "requirements.lock").read_text()
    pinned = re.compile(r"^([a-z0-9-]+)==(\S+)((?: \\\n +--hash=sha256:[0-9a-f]{64})+)$", re.M)
    pins = {m.group(1): m.group(3).count("--hash=") for m in pinned.finditer(lock)}
    requirement_lines = [ln for ln in lock.splitlines() if ln and ln[0].isalnum()]
    assert len(pins) == len(requirement_lines), "every requirement pinned with its hashes"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in dependencies:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, name
    assert "setuptools" in pins  # the build backend, installed without build isolation
    assert build_only() == ["setuptools"]  # the Dockerfile uninstalls what this lists
    assert not set(LEFT_OUT) & set(pins)  # kubernetes' asyncio client: nothing imports it
    assert not {"yarl", "multidict", "frozenlist", "aiosignal", "propcache"} & set(pins)


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
    assert copies == ["--from=build /rootfs /",
                      "--from=build /opt/flux-oci-trigger /opt/flux-oci-trigger"]  # fmt: skip
    assert not [args for op, args in _final_stage() if op == "RUN"], "nothing built as root"


def test_final_stage_labels_say_what_and_which_commit() -> None:
    final = _final_stage()
    (labels,) = [args for op, args in final if op == "LABEL"]
    found = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', labels))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert found == {
        "org.opencontainers.image.title": project["name"],
        "org.opencontainers.image.description": project["description"],
        "org.opencontainers.image.licenses": project["license"]["text"],
        "org.opencontainers.image.source": "https://gitlab.com/flux-oci-trigger/flux-oci-trigger",
        "org.opencontainers.image.version": "${VERSION}",
        "org.opencontainers.image.revision": "${REVISION}",
        "org.opencontainers.image.base.name": "${BASE_IMAGE}",
    }
    args = dict(a.partition("=")[::2] for op, a in final if op == "ARG")
    assert args["VERSION"] == project["version"]  # a release bumps both
    assert args["REVISION"] == ""  # given by the build: scripts/build-image passes the commit
    build_image = (ROOT / "scripts" / "build-image").read_text()
    assert '--build-arg "REVISION=$revision"' in build_image
    assert '--label "org.opencontainers.image.revision=$revision"' in build_image  # cached
    # the labels come last: a new commit reuses every layer
    assert [op for op, _ in final][-4:] == ["ARG", "ARG", "ARG", "LABEL"]


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
    assert not _ignored("exporter/cli/main.py")
    assert not _ignored("devenv/rootfs.py")
    for private in (".git/config", ".venv/bin/python", "tests/ops/conftest.py",
                    "exporter/__pycache__/cli.cpython-311.pyc", ".dev-env/kubeconfig",
                    "devenv/image.py", "devenv/__pycache__/rootfs.cpython-311.pyc"):  # fmt: skip
        assert _ignored(private), private
