"""Differential test: ``scripts/publish-manifests`` against fluxcd/pkg/oci.

``tools/flux-push`` (built by ``scripts/build-tools flux-push``) pushes a directory with
fluxcd/pkg/oci's ``Client.Push``, the call ``flux push artifact`` makes, with the options the
CLI passes by default (source, revision, created, its default ``--ignore-paths``). The same
directory goes to a loopback registry twice, once through the library and once through
``devenv.publish``, under two tags; the two artifacts are then fetched back and compared:
manifest media type, artifactType, config and layer media types, annotations, the config's
bytes and the layer's uncompressed tar, byte for byte. (With the go-containerregistry Flux
links, scripts/tools.env, the config is the same bytes for every artifact: the empty image's.)

Only the gzip stream around the tar may differ (Go's compress/gzip against Python's zlib:
other deflate choices, same content), and so the layer's digest and size and the manifest's
digest. Everything inside it, file order, headers, modes, owners, times, the end of the
archive, has to be the same.

A missing flux-push binary skips, or fails when ``FOT_REQUIRE_TOOLS=1`` (scripts/test).
"""

from __future__ import annotations

import calendar
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devenv.publish import ROOT, main, publish_directory
from devenv.push import Pusher
from devenv.registry import RunningRegistry
from devenv.tools import tool_dir
from tests.ops.conftest import require_tool

pytestmark = pytest.mark.registry

SOURCE = "https://example.invalid/fleet.git"
REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"
CREATED = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the same in both, so the configs compare
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def flux_push() -> Path:
    built = os.environ.get("FOT_FLUX_PUSH_BIN") or str(tool_dir("flux-push") / "flux-push")
    return Path(require_tool("flux-push", built))


@pytest.fixture()
def http(registry: RunningRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.base_url, timeout=30.0) as client:
        yield client


# --- the trees ------------------------------------------------------------------------------


def odd_tree(root: Path) -> Path:
    """A directory with what a tar writer can get wrong: names that need a USTAR prefix or
    a PAX record, non-ASCII and shell-hostile names, nested and empty directories, an empty
    file, a file over several blocks, modes with and without special bits, symlinks and a
    FIFO (which Flux leaves out), and what flux push artifact ignores by default."""
    tree = root / "odd"
    files: dict[str, tuple[bytes, int]] = {
        "deploy.yaml": (b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: odd\n", 0o644),
        "empty": (b"", 0o644),
        "run.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "read-only.yaml": (b"a: 1\n", 0o444),
        "private.yaml": (b"b: 2\n", 0o600),
        "group.yaml": (b"c: 3\n", 0o640),
        "setuid": (b"x\n", 0o4755),
        "with space.yaml": (b"d: 4\n", 0o644),
        "Ünïcødé-名前.yaml": (b"e: 5\n", 0o644),
        "#hash;semi=eq@at,comma+plus~tilde": (b"f\n", 0o644),
        "a.b": (b"", 0o644),
        "a-b": (b"", 0o644),
        "A": (b"", 0o644),
        "a/b/c/deep.yaml": (b"g: 7\n", 0o644),
        "big.bin": (bytes(range(256)) * 4099, 0o644),  # not a multiple of 512
        "n" * 100: (b"100-byte name\n", 0o644),
        "n" * 101: (b"101-byte name\n", 0o644),
        ("p" * 60 + "/") * 2 + "q" * 90: (b"fits USTAR prefix+name\n", 0o644),
        ("r" * 90 + "/") * 3 + "over-256.yaml": (b"path over 256 bytes\n", 0o644),
        "s" * 50 + "/" + "t" * 120: (b"component over 100 bytes\n", 0o644),
        "u" * 99 + "/" + "v" * 101: (b"cut after a slash\n", 0o644),
        "dír/fïlé.yaml": (b"non-ASCII under a directory\n", 0o644),
        "new\nline": (b"", 0o644),
        # What flux push artifact leaves out by default (.git/, .gitignore, *.png, ...) and
        # what it keeps although the name is close.
        ".git/config": (b"[core]\n", 0o644),
        ".gitignore": (b"*.tmp\n", 0o644),
        "nested/.gitattributes": (b"* text\n", 0o644),
        "nested/.git": (b"gitdir: elsewhere\n", 0o644),
        "logo.png": (b"\x89PNG\r\n", 0o644),
        "nested/bundle.tar.gz": (b"\x1f\x8b", 0o644),
        "archive.zip/inside.yaml": (b"h: 8\n", 0o644),
        "photo.JPG": (b"kept: the patterns are case-sensitive\n", 0o644),
        "tar.gz": (b"kept: no dot before\n", 0o644),
        ".github/workflows/ci.yaml": (b"kept: not in the default list\n", 0o644),
    }
    for name, (data, mode) in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    (tree / "empty-dir").mkdir()
    (tree / "private-dir").mkdir(mode=0o700)
    (tree / "private-dir" / "x.yaml").write_bytes(b"i: 9\n")
    (tree / "private-dir").chmod(0o700)
    (tree / "sticky").mkdir()
    (tree / "sticky").chmod(0o1777)
    (tree / "link.yaml").symlink_to("deploy.yaml")
    (tree / "link-dir").symlink_to("a")
    (tree / "dangling").symlink_to("nowhere")
    os.mkfifo(tree / "fifo")
    tree.chmod(0o750)
    return tree


def manifests_copy(root: Path) -> Path:
    """The repository's manifests/, copied with its modes: Flux writes its temporary tar
    next to the source directory, which must not be the working tree."""
    copy = root / "manifests"
    shutil.copytree(ROOT / "manifests", copy, symlinks=True)
    return copy


# --- pushing and fetching -------------------------------------------------------------------


def push_with_flux(
    binary: Path, registry: RunningRegistry, directory: Path, ref: str, created: str | None
) -> str:
    args = [str(binary)]
    if created is not None:
        args += ["-created", created]
    args += [str(directory), f"oci://{registry.host}/{ref}", SOURCE, REVISION]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"flux-push failed: {done.stderr}"
    return done.stdout.strip()


def fetch(http: httpx.Client, repository: str, tag: str) -> dict[str, Any]:
    """The manifest, its config's bytes and the layer's uncompressed tar."""
    response = http.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    response.raise_for_status()
    manifest = json.loads(response.content)
    (layer,) = manifest["layers"]

    def blob(digest: str) -> bytes:
        got = http.get(f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
        got.raise_for_status()
        return got.content

    return {
        "content_type": response.headers["Content-Type"],
        "manifest": manifest,
        "config": blob(manifest["config"]["digest"]),
        "tar": gzip.decompress(blob(layer["digest"])),
    }


def tar_listing(data: bytes) -> list[tuple[Any, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
    return [
        (
            m.name,
            m.type,
            oct(m.mode),
            m.size,
            m.uid,
            m.gid,
            m.uname,
            m.gname,
            m.mtime,
            m.pax_headers,
        )
        for m in members
    ]


def first_difference(a: bytes, b: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    block = slice(at - at % 512, at - at % 512 + 512)
    return (
        f"first difference at byte {at} (block {at // 512}, offset {at % 512}); lengths "
        f"{len(a)} vs {len(b)}\nflux:    {a[block]!r}\npublish: {b[block]!r}"
    )


def assert_same_artifact(flux: dict[str, Any], ours: dict[str, Any], *, same_created: bool) -> None:
    fm, om = flux["manifest"], ours["manifest"]
    assert om["schemaVersion"] == fm["schemaVersion"] == 2
    assert om["mediaType"] == fm["mediaType"]
    assert ours["content_type"] == flux["content_type"]
    assert om.get("artifactType") == fm.get("artifactType")
    assert om["config"]["mediaType"] == fm["config"]["mediaType"]
    assert [layer["mediaType"] for layer in om["layers"]] == [
        layer["mediaType"] for layer in fm["layers"]
    ]
    assert sorted(om) == sorted(fm)  # no field one of them writes and the other does not
    assert sorted(om["config"]) == sorted(fm["config"])
    assert sorted(om["layers"][0]) == sorted(fm["layers"][0])

    created = "org.opencontainers.image.created"
    fa, oa = dict(fm["annotations"]), dict(om["annotations"])
    assert RFC3339_UTC.match(fa[created]), fa[created]
    assert RFC3339_UTC.match(oa[created]), oa[created]
    assert ours["config"] == flux["config"]
    assert om["config"] == fm["config"]
    if not same_created:  # each took the time of its own push: the format is checked above
        del fa[created], oa[created]
    assert oa == fa

    # The tar inside the layer, byte for byte; only its gzip wrapping may differ.
    if ours["tar"] != flux["tar"]:
        assert tar_listing(ours["tar"]) == tar_listing(flux["tar"])
        pytest.fail(first_difference(flux["tar"], ours["tar"]))


def push_both(
    flux_push: Path, registry: RunningRegistry, http: httpx.Client, directory: Path, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    repository = f"parity/{name}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(CREATED))
    push_with_flux(flux_push, registry, directory, f"{repository}:flux", stamp)
    with Pusher(registry.base_url) as pusher:
        publish_directory(
            pusher, repository, "publish", directory, source=SOURCE, revision=REVISION,
            created=CREATED,
        )  # fmt: skip
    return fetch(http, repository, "flux"), fetch(http, repository, "publish")


# --- the tests ------------------------------------------------------------------------------


def test_manifests_directory_matches_flux(
    flux_push: Path, registry: RunningRegistry, http: httpx.Client, tmp_path: Path
) -> None:
    flux, ours = push_both(flux_push, registry, http, manifests_copy(tmp_path), "manifests")
    assert_same_artifact(flux, ours, same_created=True)
    assert len(tar_listing(flux["tar"])) > 1  # the directory and its files, not an empty tar


def test_odd_tree_matches_flux(
    flux_push: Path, registry: RunningRegistry, http: httpx.Client, tmp_path: Path
) -> None:
    flux, ours = push_both(flux_push, registry, http, odd_tree(tmp_path), "odd")
    assert_same_artifact(flux, ours, same_created=True)
    names = {entry[0] for entry in tar_listing(flux["tar"])}
    # The tree exercises what it means to: Flux keeps these and leaves the others out.
    assert {"empty", "empty-dir", "setuid", "nested/.git", "photo.JPG"} <= names
    assert not {"link.yaml", "link-dir", "fifo", ".gitignore", "logo.png", ".git"} & names


def test_default_created_matches_flux(
    flux_push: Path, registry: RunningRegistry, http: httpx.Client, tmp_path: Path
) -> None:
    """Without a timestamp each takes the time of the push, in the same format; the configs
    are the same but for it."""
    directory = manifests_copy(tmp_path)
    url = f"oci://{registry.host}/parity/now"
    before = time.time()
    push_with_flux(flux_push, registry, directory, "parity/now:flux", None)
    code = main([f"{url}:publish", "--path", str(directory), "--source", SOURCE,
                 "--revision", REVISION, "--insecure-registry"])  # fmt: skip
    after = time.time()
    assert code == 0
    flux, ours = fetch(http, "parity/now", "flux"), fetch(http, "parity/now", "publish")
    assert_same_artifact(flux, ours, same_created=False)
    for artifact in (flux, ours):
        stamp = artifact["manifest"]["annotations"]["org.opencontainers.image.created"]
        seconds = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        assert int(before) <= seconds <= after
