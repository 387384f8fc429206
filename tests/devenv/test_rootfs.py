"""devenv/rootfs.py's reasoning, without building an image (tests/image runs the result):
which imports it finds and which of them would survive a removal, what it prunes, and how
it copies a file with the links on its way."""

from __future__ import annotations

import os
from pathlib import Path

from devenv.rootfs import Removals, Tree, imports, prune_site_packages, stdlib_files, unproven

SOURCE = """
import os, readline
from . import sibling
from ..up import thing
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import only_for_mypy
try:
    import sqlite3
except (OSError, ImportError):
    sqlite3 = None
def later():
    try:
        from curses import panel
    except ValueError:
        pass
"""


def test_imports_are_found_at_any_depth_resolved_and_marked_when_guarded() -> None:
    found = {(i.module, i.guarded) for i in imports(SOURCE, "pkg.sub.mod")}
    assert found == {
        ("os", False), ("readline", False),
        ("pkg.sub", False), ("pkg.sub.sibling", False),
        ("pkg.up", False), ("pkg.up.thing", False),
        ("typing", False), ("typing.TYPE_CHECKING", False),
        ("sqlite3", True),
        ("curses", False), ("curses.panel", False),  # ValueError does not cover its absence
    }  # fmt: skip
    # in a package's __init__, "." is the package itself
    assert {i.module for i in imports("from . import x", "pkg", is_package=True)} == {
        "pkg", "pkg.x"
    }  # fmt: skip


def test_a_removal_is_proven_only_when_every_import_of_it_is_guarded(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "safe.py").write_text(
        "try:\n    import gone\nexcept ImportError:\n    pass\n"
    )
    (tmp_path / "pkg" / "user.py").write_text("def f():\n    from gone.deep import x\n")
    (tmp_path / "unrelated.py").write_text("import gone_not\n")
    removals = Removals({"gone"})
    assert unproven([tmp_path], removals) == [
        f"{tmp_path}/pkg/user.py:2: imports gone.deep (gone)",
        f"{tmp_path}/pkg/user.py:2: imports gone.deep.x (gone)",
    ]
    (tmp_path / "pkg" / "user.py").unlink()
    assert unproven([tmp_path], removals) == []


def test_prune_removes_the_asyncio_client_tests_and_stubs_only(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    files = [
        "kubernetes/__init__.py", "kubernetes/aio/__init__.py", "kubernetes/aio/client.py",
        "kubernetes/watch/watch.py", "kubernetes/watch/watch_test.py",
        "kubernetes/watch/__pycache__/watch.cpython-311.pyc",
        "kubernetes/watch/__pycache__/watch_test.cpython-311.pyc",
        "websocket/__init__.py", "websocket/tests/__init__.py", "websocket/tests/test_x.py",
        "aiolib/test_utils.py", "aiolib/__init__.py", "aiolib/types.pyi",
        "prometheus_client/__init__.py", "prometheus_client/aiohttp/__init__.py",
        "test_toplevel.py",
    ]  # fmt: skip
    for name in files:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("x = 1\n")
    removals = Removals()
    prune_site_packages(site, removals)
    left = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert left == [
        "aiolib/__init__.py", "aiolib/test_utils.py",  # a helper module, not a test
        "kubernetes/__init__.py", "kubernetes/watch/__pycache__/watch.cpython-311.pyc",
        "kubernetes/watch/watch.py",
        "prometheus_client/__init__.py",
        "test_toplevel.py",  # a distribution's own top-level module
        "websocket/__init__.py",
    ]  # fmt: skip
    assert removals.modules == {
        "kubernetes.aio", "prometheus_client.aiohttp", "kubernetes.watch.watch_test",
        "websocket.tests",
    }  # fmt: skip
    assert removals.covers("kubernetes.aio.client") == "kubernetes.aio"
    assert removals.covers("kubernetes.watch") is None


def test_the_standard_library_less_what_is_left_out(tmp_path: Path) -> None:
    stdlib = tmp_path / "python3.11"
    files = [
        "os.py", "__pycache__/os.cpython-311.pyc", "__pycache__/os.cpython-311.opt-1.pyc",
        "turtle.py", "__pycache__/turtle.cpython-311.pyc",
        "tkinter/__init__.py", "ctypes/__init__.py", "ctypes/test/__init__.py",
        "lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
        "lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so",
        "site-packages/pip/__init__.py", "config-3.11-x86_64-linux-gnu/Makefile",
    ]  # fmt: skip
    for name in files:
        (stdlib / name).parent.mkdir(parents=True, exist_ok=True)
        (stdlib / name).write_text("x = 1\n")
    removals = Removals()
    kept = sorted(str(p.relative_to(stdlib)) for p in stdlib_files(stdlib, removals))
    assert kept == [
        "__pycache__/os.cpython-311.pyc", "ctypes/__init__.py",
        "lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", "os.py",
    ]  # fmt: skip
    assert removals.modules == {"turtle", "tkinter", "ctypes.test", "_sqlite3"}


def test_a_copy_keeps_links_and_times_and_what_the_build_made_gets_one_time(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    (source / "usr" / "bin").mkdir(parents=True)
    (source / "bin").symlink_to("usr/bin")
    (source / "usr" / "bin" / "python3.11").write_text("interpreter")
    os.utime(source / "usr" / "bin" / "python3.11", (1_000_000, 1_000_000))
    (source / "usr" / "bin" / "python3").symlink_to("python3.11")
    tree = Tree(tmp_path / "dest")
    (tmp_path / "dest").mkdir()
    # a tree rooted at ``source`` instead of / (Tree.at strips the root)
    real = tree.copy(source / "bin" / "python3")
    assert real == source / "usr" / "bin" / "python3.11"
    copy = tree.at(source)
    assert (copy / "bin").readlink() == Path("usr/bin")
    assert (copy / "usr" / "bin" / "python3").readlink() == Path("python3.11")
    assert (copy / "usr" / "bin" / "python3.11").read_text() == "interpreter"
    tree.write(source / "etc" / "passwd", "root:x:0:0::/:/sbin/nologin\n")

    tree.settle(2_000_000)
    assert (copy / "usr" / "bin" / "python3.11").stat().st_mtime == 1_000_000  # as copied
    made = [copy / "etc" / "passwd", copy / "etc", copy / "usr", copy / "bin", tmp_path / "dest"]
    assert {p.lstat().st_mtime for p in made} == {2_000_000}
