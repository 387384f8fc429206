"""Publish a directory of manifests as an OCI artifact laid out the way
``flux push artifact`` lays it out, without the flux CLI.

``scripts/publish-manifests`` runs :func:`main`. What Flux writes (fluxcd/pkg/oci
``Client.Push`` and fluxcd/pkg/tar ``Tar``, which the CLI calls):

- the layer: a gzipped tar of the directory, walked in lexical order, directories and
  regular files only (symlinks skipped), leaving out what the CLI's default
  ``--ignore-paths`` name (``.git/``, ``.gitignore``, ``*.png``, ``*.tar.gz``, ...), each
  entry named relative to the directory (the directory itself as ``.``), its permission
  bits kept, owner 0:0 without names, no timestamps, in Go archive/tar's headers (USTAR,
  long names split into prefix and name, else a PAX record);
  media type ``application/vnd.cncf.flux.content.v1.tar+gzip``. The tar is byte for byte
  the one fluxcd/pkg/oci v0.68.1 builds from the same directory; the gzip stream is not
  (another deflate), so the digests differ, as they would between two Flux CLI versions;
- the config: the empty image's config as go-containerregistry wrote it, the same bytes
  for every artifact, media type ``application/vnd.cncf.flux.config.v1+json``;
- the manifest annotations ``org.opencontainers.image.created`` (RFC 3339, UTC),
  ``.source`` and ``.revision``, always all three.

tests/devenv/test_publish_parity.py checks all of it against fluxcd/pkg/oci itself.

The blobs and the manifest go through :class:`devenv.push.Pusher`, the same path the
tests' own artifacts take.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import gzip
import io
import os
import posixpath
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from devenv.push import FLUX_CONFIG, FLUX_CONTENT, OCI_MANIFEST, Pushed, Pusher

ROOT = Path(__file__).resolve().parents[1]
# The project whose registry holds the image (registry.gitlab.com/flux-oci-trigger/...).
DEFAULT_SOURCE = "https://gitlab.com/flux-oci-trigger/flux-oci-trigger"


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: a CI checkout's remote carries a job token
    (``https://gitlab-ci-token:<token>@gitlab.com/...``), and the source annotation is
    public."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


_URL = re.compile(
    r"^oci://(?P<host>[^/]+)/(?P<repository>[a-z0-9._/-]+):(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127})$"
)


# What ``flux push artifact`` leaves out unless given other ``--ignore-paths``: fluxcd/pkg/
# sourceignore's ExcludeVCS and ExcludeExt, gitignore patterns without a slash, so each is
# matched against every component of an entry's path (``.git/`` only against directories).
IGNORED_DIRECTORIES = (".git",)
IGNORED_NAMES = (".gitignore", ".gitmodules", ".gitattributes")
IGNORED_GLOBS = ("*.jpg", "*.jpeg", "*.gif", "*.png", "*.wmv", "*.flv", "*.tar.gz", "*.zip")


def _ignored(name: str, is_dir: bool) -> bool:
    """Whether flux's default ``--ignore-paths`` leave out an entry called ``name``; the
    walk stops at an ignored directory, whose contents Flux leaves out too."""
    if is_dir and name in IGNORED_DIRECTORIES:
        return True
    return name in IGNORED_NAMES or any(fnmatch.fnmatchcase(name, p) for p in IGNORED_GLOBS)


def _walk(directory: Path) -> Iterator[Path]:
    """Go's ``filepath.WalkDir`` order: the directory, then its entries sorted by name,
    each directory's contents right after it."""
    yield directory
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if not _ignored(entry.name, True):
                yield from _walk(path)
        elif entry.is_file(follow_symlinks=False) and not _ignored(entry.name, False):
            yield path


# archive/tar's limits: USTAR's name and prefix fields, its 12-byte octal size field.
_NAME, _PREFIX, _MAX_OCTAL_SIZE = 100, 155, 8**11 - 1


def _field(text: bytes, size: int) -> bytes:
    """archive/tar's formatString: the bytes, cut to the field, NUL-terminated if room; a
    cut that ends in ``/`` loses the slashes (for readers that would see a directory)."""
    field = bytearray(text[:size].ljust(size, b"\0"))
    if len(text) > size and field[-1:] == b"/":
        field[len(text[: size - 1].rstrip(b"/"))] = 0
    return bytes(field)


def _octal(value: int, size: int) -> bytes:
    """archive/tar's formatOctal: zero-padded, room left for a NUL; 0 when it does not fit."""
    if value > 8 ** (size - 1) - 1:
        value = 0
    return _field(b"%0*o" % (size - 1, value), size)


def _ascii(name: str) -> bytes:
    """archive/tar's toASCII: the non-ASCII characters dropped."""
    return "".join(c for c in name if c < "\x80").encode()


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """archive/tar's splitUSTARPath: the longest prefix that fits, if the rest fits."""
    if len(name) <= _NAME or not name.isascii():
        return None
    length = len(name)
    if length > _PREFIX + 1:
        length = _PREFIX + 1
    elif name.endswith(b"/"):
        length -= 1
    i = name.rfind(b"/", 0, length)
    if i <= 0 or len(name) - i - 1 > _NAME or len(name) - i - 1 == 0 or i > _PREFIX:
        return None
    return name[:i], name[i + 1 :]


def _block(name: bytes, mode: int, size: int, typeflag: bytes, *, prefix: bytes = b"",
           raw: bool = False) -> bytes:  # fmt: skip
    """One header block as archive/tar's templateV7Plus and setFormat(USTAR or PAX) fill
    it: owner 0:0 without names, time 0, device numbers written as zeros. ``raw`` is
    writeRawFile's block for a PAX extended header, which leaves the USTAR fields empty."""
    head = _field(name, 100) + _octal(mode, 8) + _octal(0, 8) + _octal(0, 8)
    head += _octal(size, 12) + _octal(0, 12) + b" " * 8 + typeflag + b"\0" * 100
    head += b"ustar\x0000"
    if raw:
        head += b"\0" * 80
    else:
        head += b"\0" * 64 + _octal(0, 8) + _octal(0, 8)
    head = (head + _field(prefix, 155)).ljust(512, b"\0")
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def _pax_record(key: str, value: str) -> bytes:
    """archive/tar's formatPAXRecord: ``<length> <key>=<value>\\n``, length counting itself."""
    body = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    size = len(body) + len(str(len(body)))
    if len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return str(size).encode() + body


def tar_header(name: str, mode: int, size: int, directory: bool) -> bytes:
    """The header archive/tar's Writer writes for what fluxcd/pkg/tar hands it: USTAR when
    the name fits (split into prefix and name if need be), else a PAX extended header named
    ``<dir>/PaxHeaders.0/<file>`` before a USTAR-shaped block holding what fits."""
    typeflag = b"5" if directory else b"0"
    encoded = name.encode("utf-8", "surrogateescape")
    pax: dict[str, str] = {}
    ustar = True
    if not encoded.isascii() or len(encoded) > _NAME:
        pax["path"] = name
        ustar = _split_ustar(encoded) is not None
    if size > _MAX_OCTAL_SIZE:
        pax["size"] = str(size)
        ustar = False
    if ustar:
        split = _split_ustar(encoded)
        if split is None:
            return _block(encoded, mode, size, typeflag)
        return _block(split[1], mode, size, typeflag, prefix=split[0])
    records = b"".join(_pax_record(key, pax[key]) for key in sorted(pax))
    parent, _, base = name.rpartition("/")
    pax_name = _ascii(posixpath.normpath(posixpath.join(parent, "PaxHeaders.0", base)))
    pax_name = pax_name[:_NAME].rstrip(b"/")
    extended = _block(pax_name, 0, len(records), b"x", raw=True) + _pad(records)
    return extended + _block(_ascii(name), mode, size, typeflag)


def directory_tar(directory: Path) -> bytes:
    """The tar ``flux push artifact --path DIRECTORY`` gzips into the artifact, byte for
    byte: fluxcd/pkg/tar's entries, archive/tar's headers, its end of two zero blocks
    without record padding."""
    raw = io.BytesIO()
    for path in _walk(directory):
        name = path.relative_to(directory).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            raw.write(tar_header(name, stat.S_IMODE(mode), 0, True))
        else:
            data = path.read_bytes()
            raw.write(tar_header(name, stat.S_IMODE(mode), len(data), False))
            raw.write(_pad(data))
    raw.write(b"\0" * 1024)
    return raw.getvalue()


# The config fluxcd/pkg/oci pushes: go-containerregistry (v0.21.6, as flux links it) keeps
# an artifact's config blob as the empty image wrote it, whatever was set on it since, so
# neither the created time nor the layer's digest is in it.
FLUX_CONFIG_BLOB = (
    b'{"architecture":"","created":"0001-01-01T00:00:00Z","os":"",'
    b'"rootfs":{"type":"layers","diff_ids":null},"config":{}}'
)


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
    layer = gzip.compress(directory_tar(directory), mtime=0)  # not Go's deflate: same tar
    config = FLUX_CONFIG_BLOB
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
    origin = _git("config", "--get", "remote.origin.url")
    source = args.source or (without_userinfo(origin) if origin else DEFAULT_SOURCE)
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
