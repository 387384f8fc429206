"""Publish a directory of manifests as an OCI artifact laid out the way
``flux push artifact`` lays it out, without the flux CLI.

``scripts/publish-manifests`` runs :func:`main`. What Flux writes (fluxcd/pkg/oci
``Client.Push`` and fluxcd/pkg/tar ``Tar``, which the CLI calls):

- the layer: a gzipped tar of the directory, walked in lexical order, directories and
  regular files only (symlinks skipped), each entry named relative to the directory
  (the directory itself as ``.``), its permission bits kept, owner 0:0 without names, no
  timestamps; media type ``application/vnd.cncf.flux.content.v1.tar+gzip``. The tar is
  byte for byte the one fluxcd/pkg/oci v0.68 builds from the same directory; the gzip
  stream is not (another deflate), so the digests differ, as they would between two
  Flux CLI versions;
- the config: go-containerregistry's image config with ``created`` and the layer's
  uncompressed digest (byte for byte), media type
  ``application/vnd.cncf.flux.config.v1+json``;
- the manifest annotations ``org.opencontainers.image.created`` (RFC 3339, UTC),
  ``.source`` and ``.revision``, always all three.

The blobs and the manifest go through :class:`devenv.push.Pusher`, the same path the
tests' own artifacts take.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devenv.push import FLUX_CONFIG, FLUX_CONTENT, OCI_MANIFEST, Pushed, Pusher, sha256_digest

ROOT = Path(__file__).resolve().parents[1]
# The project whose registry holds the image (registry.gitlab.com/flux-oci-trigger/...).
DEFAULT_SOURCE = "https://gitlab.com/flux-oci-trigger/flux-oci-trigger"
_URL = re.compile(
    r"^oci://(?P<host>[^/]+)/(?P<repository>[a-z0-9._/-]+):(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127})$"
)


def _walk(directory: Path) -> Iterator[Path]:
    """Go's ``filepath.WalkDir`` order: the directory, then its entries sorted by name,
    each directory's contents right after it."""
    yield directory
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)
        elif entry.is_file(follow_symlinks=False):
            yield path


class _GoTarInfo(tarfile.TarInfo):
    """A header as Go's archive/tar writes it: directories named without a trailing
    ``/``, device numbers written as zeros rather than left empty."""

    def get_info(self) -> Any:
        info = dict(super().get_info())
        if info["type"] == tarfile.DIRTYPE and info["name"] != "/":
            info["name"] = str(info["name"]).rstrip("/")
        return info

    def tobuf(self, *args: Any, **kwargs: Any) -> bytes:
        buf = bytearray(super().tobuf(*args, **kwargs))
        if len(buf) != tarfile.BLOCKSIZE:  # a PAX extended header came first: left as is
            return bytes(buf)
        buf[329:345] = b"0000000\x000000000\x00"
        buf[148:156] = b" " * 8
        buf[148:155] = b"%06o\x00" % sum(buf)
        return bytes(buf)


def directory_tar(directory: Path) -> bytes:
    """The tar ``flux push artifact --path DIRECTORY`` gzips into the artifact, byte for
    byte (entries, headers, Go's end without record padding)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      tarinfo=_GoTarInfo) as tar:  # fmt: skip
        for path in _walk(directory):
            info = _GoTarInfo(path.relative_to(directory).as_posix())
            mode = path.lstat().st_mode
            info.mode = stat.S_IMODE(mode)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        end = tar.offset + 2 * tarfile.BLOCKSIZE  # Go writes two zero blocks and stops
    return raw.getvalue()[:end]


def flux_config(created: str, diff_id: str) -> bytes:
    """The config go-containerregistry writes for an empty image given ``created`` and one
    layer whose uncompressed digest is ``diff_id``, as Go marshals it."""
    config = {
        "architecture": "",
        "created": created,
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {},
    }
    return json.dumps(config, separators=(",", ":")).encode()


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def publish_directory(
    pusher: Pusher,
    repository: str,
    tag: str,
    directory: Path,
    *,
    source: str,
    revision: str,
    created: float | None = None,
) -> Pushed:
    """Push ``directory`` as ``repository:tag``; returns the manifest digest Flux reports."""
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    stamp = rfc3339(created if created is not None else time.time())
    tar = directory_tar(directory)
    layer = gzip.compress(tar, mtime=0)  # Python's deflate, not Go's: other bytes, same tar
    config = flux_config(stamp, sha256_digest(tar))
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": FLUX_CONFIG,
            "digest": pusher.blob(repository, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": FLUX_CONTENT,
                "digest": pusher.blob(repository, layer),
                "size": len(layer),
            }
        ],
        "annotations": {
            "org.opencontainers.image.created": stamp,
            "org.opencontainers.image.source": source,
            "org.opencontainers.image.revision": revision,
        },
    }
    return pusher.manifest(repository, tag, manifest)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def git_revision() -> str | None:
    """``<branch>@sha1:<commit>`` of this checkout, the form Flux's documentation uses."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None
    branch = _git("rev-parse", "--abbrev-ref", "HEAD") or "HEAD"
    return f"{branch}@sha1:{commit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/publish-manifests",
        description="Push a directory of manifests (default manifests/) as a Flux OCI "
        "artifact, as `flux push artifact` does.",
    )
    parser.add_argument("url", help="oci://HOST[:PORT]/REPOSITORY:TAG")
    parser.add_argument("--path", type=Path, default=ROOT / "manifests",
                        help="directory to publish (default: manifests/)")  # fmt: skip
    parser.add_argument("--source", help="org.opencontainers.image.source "
                        "(default: git remote origin, else the project's address)")  # fmt: skip
    parser.add_argument("--revision", help="org.opencontainers.image.revision "
                        "(default: <branch>@sha1:<commit> of this checkout)")  # fmt: skip
    parser.add_argument("--creds", help="USER:PASSWORD for HTTP Basic auth "
                        "(default: $PUBLISH_CREDS, else anonymous)")  # fmt: skip
    parser.add_argument("--insecure-registry", action="store_true",
                        help="plain HTTP, as flux push artifact --insecure-registry")  # fmt: skip
    args = parser.parse_args(argv)
    match = _URL.match(args.url)
    if match is None:
        parser.error(f"not oci://HOST[:PORT]/REPOSITORY:TAG: {args.url}")
    source = args.source or _git("config", "--get", "remote.origin.url") or DEFAULT_SOURCE
    revision = args.revision or git_revision() or ""
    creds = args.creds or os.environ.get("PUBLISH_CREDS")
    headers = {}
    if creds:
        headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
    scheme = "http" if args.insecure_registry else "https"
    with Pusher(f"{scheme}://{match['host']}", headers) as pusher:
        pushed = publish_directory(
            pusher, match["repository"], match["tag"], args.path,
            source=source, revision=revision,
        )  # fmt: skip
    print(f"oci://{match['host']}/{pushed.repository}:{pushed.tag}@{pushed.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
