"""The container image on a machine without a container engine: its dependency lock, and
running it the way a runtime would, as its own user on a read-only root filesystem.

``scripts/build-image`` builds the image with ``buildah`` (chroot isolation). Running it
needs no runtime either: :func:`mounted` exposes the image's filesystem through ``buildah
mount``, and :func:`run_read_only` starts its entrypoint in a private mount namespace where
that filesystem is bind-mounted read-only, with a fresh tmpfs on ``/tmp``, ``/proc`` and a
minimal ``/dev``, then ``chroot``s into it as the image's ``USER``. The process keeps the
pid of the ``Popen`` (``unshare`` and ``chroot`` exec, nothing forks), so it is stopped
and reaped like any child, and ``/proc/<pid>/status`` shows the image's own process.

``python -m devenv.image lock`` rewrites ``requirements.lock``: the runtime dependency
closure of pyproject's ``dependencies`` at the versions this virtualenv has, less
:data:`LEFT_OUT` and what only they require, plus the newest ``build-system.requires``
release, each with the sha256 of its wheels for CPython 3.11 on linux x86_64 and aarch64
(downloaded from the index with pip to hash them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYTHON = "3.11"
GLIBC = 36  # Debian bookworm's glibc 2.36: the base of both the public and the local image
ARCHES = ("x86_64", "aarch64")

# Declared requirements of our dependencies that the image leaves out, with why. What only
# they require goes too (aiohttp's yarl, multidict, frozenlist, aiosignal, propcache, attrs,
# aiohappyeyeballs). The image's build imports everything the exporter imports instead of
# `pip check`, which would report these as missing.
LEFT_OUT = {
    "aiohttp": "kubernetes' asyncio client (kubernetes.aio), which the image does not ship",
    "aiohttp-retry": "the same asyncio client",
}

_LOCK_HEADER = """\
# The image's Python dependencies, pinned with the sha256 of their wheels (CPython {python},
# linux {arches}); the Dockerfile installs exactly these, with pip --require-hashes.
# Runtime: the closure of pyproject's [project] dependencies at the .venv's versions, less
# what the image never imports (and what only that requires):
{left_out}# Build only (removed from the image): [build-system] requires, newest release.
# Refresh after changing either or upgrading the .venv: .venv/bin/python -m devenv.image lock
"""


def runtime_pins(
    requirements: Sequence[str], left_out: Mapping[str, str] = LEFT_OUT
) -> dict[str, str]:
    """Installed name -> version for ``requirements`` and everything they require, but
    ``left_out`` and what is required only through them."""
    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in pins or name in left_out:
            continue
        dist = metadata.distribution(req.name)
        pins[name] = dist.version
        for raw in dist.requires or []:
            dep = Requirement(raw)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                todo.append(dep)
    return pins


def _pip_download(args: Sequence[str], dest: Path) -> None:
    env = dict(os.environ, PIP_FIND_LINKS="")  # hashes of the index's files, never local ones
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary=:all:", "--dest", str(dest), *args],
        check=True, env=env,
    )  # fmt: skip


def _wheel_hashes(directory: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for wheel in directory.glob("*.whl"):
        name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        found.setdefault(name, set()).add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    return found


def write_lock(path: Path = LOCK) -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = runtime_pins(project["project"]["dependencies"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _pip_download(project["build-system"]["requires"], work / "build")
        build: dict[str, str] = {}
        for wheel in (work / "build").glob("*.whl"):
            project_name, version, *_ = parse_wheel_filename(wheel.name)
            build[str(project_name)] = str(version)
        pins = {**runtime, **build}
        hashes: dict[str, set[str]] = {}
        for arch in ARCHES:
            # pip takes each platform tag literally: name every glibc up to bookworm's
            platforms = [f"--platform=manylinux_2_{minor}_{arch}" for minor in range(5, GLIBC + 1)]
            target = [*platforms, "--implementation=cp", f"--python-version={PYTHON}",
                      f"--abi=cp{PYTHON.replace('.', '')}"]  # fmt: skip
            _pip_download([*target, *(f"{n}=={v}" for n, v in pins.items())], work / arch)
            for wheel_name, digests in _wheel_hashes(work / arch).items():
                hashes.setdefault(wheel_name, set()).update(digests)
    left_out = "".join(f"#   {name}: {why}\n" for name, why in LEFT_OUT.items())
    text = _LOCK_HEADER.format(python=PYTHON, arches=" and ".join(ARCHES), left_out=left_out)
    for section, names in (("runtime", runtime), ("build", build)):
        text += f"\n# {section}\n"
        for name in sorted(names):
            lines = [f"{name}=={pins[name]}"]
            lines += [f"    --hash=sha256:{digest}" for digest in sorted(hashes[name])]
            text += " \\\n".join(lines) + "\n"
    path.write_text(text)
    return text


def build_only(path: Path = LOCK) -> list[str]:
    """The lock's build-only names (the Dockerfile removes them from the image)."""
    section = path.read_text().partition("\n# build\n")[2]
    return [m.group(1) for m in re.finditer(r"^([a-z0-9-]+)==", section, re.MULTILINE)]


# -- the built image ------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    name: str
    id: str
    size: int  # bytes, as buildah reports it (uncompressed layers)
    config: dict[str, Any]  # the OCI image config's "config": User, Env, Entrypoint, Cmd...

    @property
    def env(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.config.get("Env") or [])
        return {key: value for key, _, value in pairs}


def inspect(name: str) -> Image:
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    info = json.loads(out.stdout)
    oci = json.loads(info["Config"]) if isinstance(info["Config"], str) else info["Config"]
    layers = json.loads(info["Manifest"])["layers"]  # as stored: uncompressed
    size = sum(int(layer["size"]) for layer in layers)
    return Image(name, info["FromImageID"], size, oci.get("config") or {})


@contextmanager
def mounted(image: str) -> Iterator[Path]:
    """The image's root filesystem, through a working container removed afterwards."""
    container = subprocess.run(
        ["buildah", "from", "--pull-never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        mountpoint = subprocess.run(
            ["buildah", "mount", container], capture_output=True, text=True, check=True
        ).stdout.strip()
        yield Path(mountpoint)
    finally:
        subprocess.run(["buildah", "umount", container], capture_output=True, check=False)
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


# Runs in a private mount namespace (nothing it mounts is seen outside), as root, then
# becomes the image's process: "$1" rootfs, "$2" files for /tmp, "$3" user, "$4" this host's
# PATH (for its own tools: the image's PATH, in the environment for argv, may not have them),
# then argv.
_ENTER = r"""
root=$1 stage=$2 user=$3 image_path=$PATH
PATH=$4
shift 4
mount --bind "$root" "$root"
mount -o remount,bind,ro,nosuid,nodev "$root"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m tmpfs "$root/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o mode=755,nosuid,size=64k tmpfs "$root/dev"
for node in null zero random urandom; do
  : > "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
cp -R "$stage/." "$root/tmp/"
chown -R "$user" "$root/tmp"
chmod 1777 "$root/tmp"
chroot=$(command -v chroot)
PATH=$image_path
exec "$chroot" --userspec="$user" --groups="${user#*:}" "$root" "$@"
"""


def run_read_only(
    rootfs: Path,
    image: Image,
    args: Sequence[str],
    *,
    tmp_files: Path,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the image's entrypoint with ``args`` (instead of its CMD) as its ``USER``, on
    ``rootfs`` mounted read-only; the contents of ``tmp_files`` are copied into its tmpfs
    ``/tmp`` (owned by that user). Shares the host's network. Needs root."""
    user = image.config.get("User") or "0:0"
    if ":" not in user:
        user = f"{user}:{user}"
    entrypoint = list(image.config.get("Entrypoint") or [])
    environ = {"HOME": "/", **image.env, **(env or {})}  # HOME as runtimes set it
    out = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(
            [shutil.which("unshare") or "unshare", "--mount", "--propagation=private",
             "/bin/sh", "-euc", _ENTER, "sh", str(rootfs), str(tmp_files), user,
             os.environ.get("PATH", os.defpath), *entrypoint, *args],
            env=environ, stdin=subprocess.DEVNULL,
            stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
    finally:
        if out is not None:
            out.close()


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["lock"]:
        print(write_lock(), end="")
        return 0
    print("usage: python -m devenv.image lock", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
