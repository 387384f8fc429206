"""The image's root filesystem, assembled in the Dockerfile's build stage: the final stage
is ``FROM scratch`` and copies this tree and the virtualenv, nothing else. No package
manager, no Perl, no coreutils, no gconv; a shell only when asked (``--busybox``: GitLab
runs CI jobs in the image through ``sh``, see ``ci/gitlab/notify.yml``).

Run there by the virtualenv's interpreter, isolated (the build's source tree must not be
on ``sys.path``)::

    /opt/flux-oci-trigger/bin/python3 -I rootfs.py [--busybox] VENV DEST

1. **Imports**: every exporter module, and every module the exporter imports anywhere
   (inside functions too), is imported; a dependency missing from the lock fails the
   build. This stands in for ``pip check``, which would report the requirements that the
   lock leaves out on purpose (``devenv.image.LEFT_OUT``).
2. **Prune** the virtualenv in place: :data:`VENV_LEFT_OUT`, packages' own tests, type
   stubs.
3. **Copy** into DEST, at the paths the base has them (symlinks too: merged ``/usr``,
   ``python3 -> python3.11``): the base's interpreter and its standard library less
   :data:`STDLIB_LEFT_OUT`, byte-compiled; the shared libraries that the interpreter and
   every extension module link (``ldd``) with a loader cache; the CA bundle that
   OpenSSL's default verify paths lead to, and OpenSSL's configuration; ``/etc/passwd``
   and ``/etc/group`` (root, nonroot 65532), ``nsswitch.conf``, ``os-release``; empty
   ``/tmp``, ``/proc``, ``/dev`` and ``/sys`` for a runtime's mounts; and, as distroless
   does, the dpkg records of the Debian packages these files come from
   (``/var/lib/dpkg/status.d``), so that image scanners still see them. What the build
   makes bears one time, so an unchanged runtime is the same layer build after build.
4. **Prove** the removals: in what is kept, every import of a removed module sits in a
   ``try`` that handles ``ImportError`` (``pydoc`` without its topics, ``site`` without
   ``readline``), or is listed in :data:`DEAD_IMPORTS` with why it never runs.

Standard library only: this runs on the base's Python before anything else is there.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/")
NONROOT = 65532

_LEFT_OUT_WHY = {
    "CPython's own tests": (
        "test", "_testcapi", "_testinternalcapi", "_testbuffer", "_testclinic",
        "_testmultiphase", "_testimportmultiple", "_ctypes_test", "_xxtestfuzz",
        "xxlimited", "xxlimited_35", "_xxsubinterpreters",
    ),
    "Tk and what runs on it (no Tk in the image)": (
        "tkinter", "_tkinter", "idlelib", "turtle", "turtledemo",
    ),
    "tools for making environments and porting code, used at build time or never": (
        "ensurepip", "venv", "distutils", "_distutils_system_mod", "lib2to3",
    ),
    "help() topics: pydoc says they are not installed": ("pydoc_data",),
    "interactive line editing (libreadline); site and pdb go without": ("readline",),
    "terminal UIs (libncursesw)": ("curses", "_curses", "_curses_panel"),
    "SQLite (libsqlite3)": ("sqlite3", "_sqlite3"),
    "dbm's ndbm and gdbm backends (libdb, libgdbm); dbm falls back to dbm.dumb": (
        "_dbm", "_gdbm",
    ),
    "NIS lookups (libnsl, libtirpc, Kerberos)": ("nis",),
    "OSS audio": ("ossaudiodev",),
    "Unix password hashing (libcrypt), deprecated": ("crypt", "_crypt"),
}  # fmt: skip
STDLIB_LEFT_OUT = {name: why for why, names in _LEFT_OUT_WHY.items() for name in names}
"""Standard library modules (top-level names) the image leaves out, and why."""

VENV_LEFT_OUT = {
    "kubernetes.aio": "kubernetes' asyncio client; aiohttp is left out of the lock",
    "prometheus_client.aiohttp": "an aiohttp request handler; aiohttp is left out",
}
"""Modules of installed packages the image leaves out (besides tests and stubs)."""

DEAD_IMPORTS = {
    ("multiprocessing.util", "test"): "in _cleanup_tests(), which only CPython's tests call",
    ("cmd", "readline"): "in Cmd.complete(), which only readline calls",
    ("dbm.ndbm", "_dbm"): "a backend of dbm, which imports it under except ImportError",
    ("dbm.gnu", "_gdbm"): "a backend of dbm, which imports it under except ImportError",
}
"""(importing module, removed module) -> why that import, unguarded, never runs."""

_TEST_FILE = re.compile(r"\w+_test\.py")  # kubernetes' tests sit beside its modules
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


# -- 1. imports -------------------------------------------------------------------------------


def module_name(root: Path, path: Path) -> tuple[str, bool]:
    """The dotted name of the module in ``path`` under ``root``, and whether it is a
    package's ``__init__``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute, dotted; for ``from M import x`` both M and M.x are listed
    guarded: bool  # inside ``try`` whose handlers take ImportError


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[Import] = []
        self._guards = 0

    def visit_Try(self, node: ast.Try) -> None:
        self._visit_try(node.body, node.handlers, [*node.orelse, *node.finalbody])

    def visit_TryStar(self, node: ast.TryStar) -> None:
        self._visit_try(node.body, node.handlers, [*node.orelse, *node.finalbody])

    def _visit_try(
        self, body: list[ast.stmt], handlers: list[ast.ExceptHandler], rest: list[ast.stmt]
    ) -> None:
        guards = any(_takes_import_error(h.type) for h in handlers)
        self._guards += guards
        for stmt in body:
            self.visit(stmt)
        self._guards -= guards
        for other in [*handlers, *rest]:
            self.visit(other)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test):
            for stmt in node.orelse:  # the body is for type checkers: it never runs
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(node.lineno, alias.name, self._guards > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        self.found.append(Import(node.lineno, base, self._guards > 0))
        for alias in node.names:
            if alias.name != "*":
                self.found.append(Import(node.lineno, f"{base}.{alias.name}", self._guards > 0))


def _takes_import_error(kind: ast.expr | None) -> bool:
    if kind is None:
        return True
    if isinstance(kind, ast.Tuple):
        return any(_takes_import_error(k) for k in kind.elts)
    return isinstance(kind, ast.Name) and kind.id in _IMPORT_ERRORS


def imports(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import statement of ``source`` (the module ``module``), at any depth, but
    those under ``if TYPE_CHECKING:``."""
    visitor = _Imports(module, is_package)
    visitor.visit(ast.parse(source))
    return visitor.found


def import_everything(package: str) -> list[str]:
    """Import every module of ``package`` and every module they import (function bodies
    included, ``__main__`` excepted); the names imported."""
    root = importlib.import_module(package)
    wanted: set[str] = set()
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if info.name.rpartition(".")[2] == "__main__":
            continue
        wanted.add(info.name)
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None, info.name
        source = Path(spec.origin).read_text()
        for found in imports(source, info.name, info.ispkg):
            if not found.guarded:
                wanted.add(found.module)
    done = []
    for name in sorted(wanted):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name or "." not in name:
                raise  # a missing module, not ``from M import attribute``
            continue
        done.append(name)
    return done


# -- 2. and 4.: removals and their proof ------------------------------------------------------


@dataclass
class Removals:
    modules: set[str] = field(default_factory=set)
    bytes: int = 0

    def covers(self, name: str) -> str | None:
        """The removed module that ``name`` is, or is inside of."""
        while name:
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*"))


def prune_site_packages(site: Path, removals: Removals) -> None:
    """Remove :data:`VENV_LEFT_OUT`, tests (``tests/`` folders in packages, ``*_test.py``)
    and type stubs from an installed tree."""
    doomed: list[Path] = []
    for name in VENV_LEFT_OUT:
        path = site.joinpath(*name.split("."))
        if path.is_dir() or path.with_suffix(".py").is_file():
            doomed.append(path if path.is_dir() else path.with_suffix(".py"))
    for path in site.rglob("*"):
        if path.parent == site or "__pycache__" in path.parts:
            continue  # top-level names are distributions' own modules, kept
        if path.is_dir():
            tests = path.name in ("tests", "test") and (path.parent / "__init__.py").exists()
        else:
            tests = bool(_TEST_FILE.fullmatch(path.name)) or path.suffix == ".pyi"
        if tests:
            doomed.append(path)
    for path in doomed:
        if not path.exists():
            continue  # inside a folder removed before
        removals.bytes += _size(path)
        if path.suffix == ".py" or path.is_dir():
            removals.modules.add(module_name(site, path)[0])
        if path.is_dir():
            shutil.rmtree(path)
            continue
        path.unlink()
        if path.suffix == ".py":
            for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
                removals.bytes += cached.stat().st_size
                cached.unlink()


def unproven(roots: Iterable[Path], removals: Removals) -> list[str]:
    """Imports of removed modules, in the kept ``.py`` files under ``roots``, that are
    neither guarded nor in :data:`DEAD_IMPORTS`: each would fail at run time."""
    leaves = sorted({name.rpartition(".")[2] for name in removals.modules})
    mentions = re.compile(rf"\b(?:{'|'.join(map(re.escape, leaves))})\b")
    problems = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            source = path.read_text(encoding="utf-8", errors="replace")
            if not mentions.search(source):
                continue
            module, is_package = module_name(root, path)
            for found in imports(source, module, is_package):
                removed = removals.covers(found.module)
                if removed is None or found.guarded or (module, removed) in DEAD_IMPORTS:
                    continue
                if removals.covers(module):
                    continue  # itself removed
                problems.append(f"{path}:{found.line}: imports {found.module} ({removed})")
    return problems


# -- 3. the tree ----------------------------------------------------------------------------


class Tree:
    """DEST, filled with files of this filesystem at their own paths."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.copied: set[Path] = set()  # source paths, as reached (symlinks included)

    def at(self, path: Path) -> Path:
        return self.dest / path.relative_to(ROOT)

    def directory(self, path: Path) -> Path:
        """Make ``path``'s directories in DEST, symlinks as they are; the real directory."""
        real = ROOT
        for part in path.relative_to(ROOT).parts:
            step = real / part
            if step.is_symlink():
                self.link(step)
                real = Path(os.path.realpath(step))
                self.directory(real)
            else:
                real = step
                target = self.at(real)
                if not target.exists():
                    target.mkdir()
                    shutil.copystat(real, target)
        return real

    def link(self, path: Path) -> None:
        target = self.at(path)
        if not target.is_symlink():
            self.directory(path.parent)
            target.symlink_to(os.readlink(path))
            self.copied.add(path)

    def copy(self, path: Path) -> Path:
        """Copy a file (or a symlink and what it leads to); the file's real path."""
        path = self.directory(path.parent) / path.name
        if path.is_symlink():
            self.link(path)
            return self.copy(Path(os.path.realpath(path)))
        target = self.at(path)
        if not target.exists():
            shutil.copy2(path, target)
            self.copied.add(path)
        return path

    def settle(self, timestamp: int) -> None:
        """Give what this build made (folders, links, written files) the same time in
        every build, so that an unchanged runtime is the same layer: registries and nodes
        keep it from one release to the next. Copied files keep theirs (bytecode checks
        its source's)."""
        copied = {self.at(p) for p in self.copied if not p.is_symlink()}
        for path in [self.dest, *self.dest.rglob("*")]:
            if path not in copied or path.is_dir():
                os.utime(path, (timestamp, timestamp), follow_symlinks=False)

    def write(self, path: Path, text: str, mode: int = 0o644) -> None:
        target = self.at(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def empty(self, path: Path, mode: int, owner: int = 0) -> None:
        target = self.at(path)
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(mode)
        os.chown(target, owner, owner)


def stdlib_files(stdlib: Path, removals: Removals) -> list[Path]:
    """The standard library's files, less the modules :data:`STDLIB_LEFT_OUT` names and
    test packages inside others (``ctypes.test``: Debian and the python images leave them
    out too), added to ``removals``; less the base's own site-packages, its build
    configuration and bytecode of other optimization levels."""
    kept: list[Path] = []
    tag = f".{sys.implementation.cache_tag}.pyc"

    def leave_out(path: Path) -> None:
        if path.parent.name == "lib-dynload":  # an extension module: its name ends at a dot
            removals.modules.add(path.name.split(".")[0])
        elif path.parent.name != "__pycache__":
            removals.modules.add(module_name(stdlib, path)[0])
        removals.bytes += _size(path)

    def walk(path: Path) -> None:
        top = path.parent in (stdlib, stdlib / "__pycache__", stdlib / "lib-dynload")
        if path.parent == stdlib and (
            path.name in ("site-packages", "dist-packages") or path.name.startswith("config-")
        ):
            return
        if top and path.name.split(".")[0] in STDLIB_LEFT_OUT:
            return leave_out(path)
        if path.is_dir() and path.name in ("test", "tests", "idle_test"):
            return leave_out(path)
        if path.parent.name == "__pycache__" and not path.name.endswith(tag):
            return None
        if path.is_dir() and not path.is_symlink():
            for child in sorted(path.iterdir()):
                walk(child)
        else:
            kept.append(path)
        return None

    for entry in sorted(stdlib.iterdir()):
        walk(entry)
    return kept


def elf_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield path


_LDD_LINE = re.compile(r"^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$")


def linked_libraries(files: Iterable[Path]) -> set[Path]:
    """The shared libraries (and loader) ``files`` need, as ``ldd`` resolves them."""
    found: set[Path] = set()
    for path in files:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        if "not found" in out.stdout:
            raise SystemExit(f"rootfs: {path} links a library that is not there:\n{out.stdout}")
        for line in out.stdout.splitlines():
            match = _LDD_LINE.match(line)
            if match:
                found.add(Path(match.group(1)))
    return found


def dpkg_records(tree: Tree) -> dict[str, str]:
    """Package name -> its dpkg status record, for the Debian packages the copied files
    belong to (by their own path, or their path before merged /usr)."""
    if shutil.which("dpkg-query") is None:
        return {}
    paths = set()
    for path in tree.copied:
        if path.is_dir():
            continue  # /lib -> usr/lib and the like: many packages own a directory
        paths.add(str(path))
        if str(path).startswith("/usr/"):
            paths.add(str(path)[4:])
    owners = subprocess.run(
        ["dpkg-query", "--search", *sorted(paths)], capture_output=True, text=True, check=False
    ).stdout
    packages: set[str] = set()
    for line in owners.splitlines():
        names, _, _ = line.partition(": ")
        packages.update(n.strip().split(":")[0] for n in names.split(",") if "diversion" not in n)
    if not packages:
        return {}
    status = subprocess.run(
        ["dpkg-query", "--status", *sorted(packages)], capture_output=True, text=True, check=True
    ).stdout
    records = {}
    for record in status.strip().split("\n\n"):
        name = re.search(r"^Package: (\S+)$", record, re.M)
        if name:
            records[name.group(1)] = record + "\n"
    return records


def assemble(venv: Path, dest: Path, *, busybox: bool) -> list[str]:
    """Build DEST (see the module's docstring); lines to report."""
    (site,) = (venv / "lib").glob("python3*/site-packages")
    report = [f"imported: {len(import_everything('exporter'))} modules"]

    removals = Removals()
    prune_site_packages(site, removals)

    tree = Tree(dest)
    interpreter = venv / "bin" / "python3"
    while interpreter.is_relative_to(venv):  # the venv's links lead to the base's python3
        interpreter = interpreter.parent / os.readlink(interpreter)
    tree.copy(interpreter)
    stdlib = Path(sysconfig.get_path("stdlib"))
    for path in stdlib_files(stdlib, Removals()):
        if path.suffix == ".py":
            compileall.compile_file(path, quiet=2)  # a base may ship no bytecode
    for path in stdlib_files(stdlib, removals):
        tree.copy(path)
    if busybox:
        found = shutil.which("busybox")
        if found is None:
            raise SystemExit("rootfs: --busybox, but the build stage has no busybox")
        real = tree.copy(Path(found))
        applets = subprocess.run([found, "--list"], capture_output=True, text=True, check=True)
        for applet in applets.stdout.split():
            target = tree.at(Path("/usr/bin") / applet)
            if not target.exists() and not target.is_symlink():
                target.symlink_to(real)

    elves = [*elf_files(dest), *elf_files(venv)]
    libraries = linked_libraries(elves)
    for library in sorted(libraries):
        if not library.is_relative_to(venv):
            tree.copy(library)

    paths = ssl.get_default_verify_paths()
    if paths.openssl_cafile is None or not Path(paths.openssl_cafile).is_file():
        raise SystemExit(f"rootfs: no CA bundle at {paths.openssl_cafile}: ca-certificates?")
    tree.copy(Path(paths.openssl_cafile))
    if paths.openssl_capath and Path(paths.openssl_capath).is_symlink():
        tree.link(Path(paths.openssl_capath))  # where hashed certificates may be mounted
    config = Path(paths.openssl_cafile).parent / "openssl.cnf"
    if config.exists():
        tree.copy(config)

    etc = Path("/etc")
    tree.write(etc / "passwd", "root:x:0:0:root:/root:/sbin/nologin\n"
               f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")  # fmt: skip
    tree.write(etc / "group", f"root:x:0:\nnonroot:x:{NONROOT}:\n")
    tree.write(etc / "nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    if (etc / "os-release").exists():
        tree.copy(etc / "os-release")
    for conf in [etc / "ld.so.conf", *sorted((etc / "ld.so.conf.d").glob("*.conf"))]:
        if conf.exists():
            tree.copy(conf)
    subprocess.run(["ldconfig", "-X", "-r", str(dest)], check=True)
    for top in ("bin", "sbin", "lib", "lib64"):  # merged /usr, as the base has it
        link = ROOT / top
        if link.is_symlink() and tree.at(Path(os.path.realpath(link))).is_dir():
            tree.link(link)
    tree.empty(Path("/tmp"), 0o1777)
    for mountpoint in ("/proc", "/dev", "/sys"):
        tree.empty(Path(mountpoint), 0o755)
    tree.empty(Path("/root"), 0o700)
    tree.empty(Path("/home/nonroot"), 0o700, owner=NONROOT)

    records = dpkg_records(tree)
    for package, record in records.items():
        tree.write(Path("/var/lib/dpkg/status.d") / package, record)

    tree.settle(int(interpreter.stat().st_mtime))

    problems = unproven([tree.at(stdlib), site], removals)
    if problems:
        raise SystemExit("rootfs: removed modules that kept code imports:\n" + "\n".join(problems))
    report += [
        f"removed: {len(removals.modules)} modules, {removals.bytes / 1e6:.1f} MB",
        f"copied: {len(tree.copied)} files; libraries: "
        + " ".join(sorted(p.name for p in libraries if not p.is_relative_to(venv))),
        f"dpkg records: {' '.join(sorted(records))}",
    ]
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--busybox", action="store_true", help="busybox as sh and its applets")
    parser.add_argument("venv", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    for line in assemble(args.venv.resolve(), args.dest.resolve(), busybox=args.busybox):
        print(f"rootfs: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
