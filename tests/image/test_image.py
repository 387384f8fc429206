"""The built image, run as a container runtime would run it: its entrypoint as uid 65532 on
a read-only root filesystem (tmpfs on /tmp), against the real API server and registries
(HTTPS too); what its root filesystem holds, and no more; and pushed to a registry, its
manifest read back.

The image is built from this tree by scripts/build-image (tests/image/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client, config

from devenv.image import LOCK, Image, build_only, run_read_only
from devenv.kubeapi import ControlPlane
from devenv.ports import free_port
from devenv.procs import reap
from devenv.push import Pusher
from devenv.registry import RunningRegistry, registry_binary, start_registry
from tests.fixtures.objects import GROUP, VERSION, namespace, oci_repository
from tests.image.conftest import Built
from tests.ops.conftest import ROOT
from tests.scrape import sample, wait

pytestmark = pytest.mark.image

PREFIX = "oci-trigger.gitlab.com/"
SIZE_BUDGET = 150_000_000  # bytes, uncompressed; measured 129 MB (230 MB on a whole Debian)
COMPRESSED_BUDGET = 45_000_000  # bytes, as a registry stores it; measured 30 MB (69 MB)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (ln.partition(":") for ln in lines)}


def _mounts(pid: int) -> dict[str, tuple[str, str]]:
    """Mount point (as the process sees it) -> (per-mount options, filesystem type)."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        found[parts[4]] = (parts[5], rest.split()[0])
    return found


def _stage_kubeconfig(kubeconfig: Path, stage: Path) -> None:
    """The admin kubeconfig and its files under ``stage/kube``, pointing at /tmp/kube."""
    (stage / "kube").mkdir(parents=True)
    original = yaml.safe_load(kubeconfig.read_text())
    cluster, user = original["clusters"][0]["cluster"], original["users"][0]["user"]
    for entry, key in ((cluster, "certificate-authority"), (user, "client-certificate"),
                       (user, "client-key")):  # fmt: skip
        source = Path(entry[key])
        shutil.copy(source, stage / "kube" / source.name)
        entry[key] = f"/tmp/kube/{source.name}"
    (stage / "kube" / "kubeconfig").write_text(yaml.safe_dump(original))


def _run(
    rootfs: Path, image: Image, args: list[str], tmp_path: Path, stage: Path | None = None
) -> tuple[int, str]:
    """Run the image's entrypoint with ``args`` to its end: exit code, output."""
    if stage is None:
        stage = tmp_path / "empty"
        stage.mkdir(exist_ok=True)
    log = tmp_path / f"run-{time.monotonic_ns()}.log"
    proc = run_read_only(rootfs, image, args, tmp_files=stage, log=log)
    try:
        code = proc.wait(timeout=60)
    finally:
        reap(proc, 1.0)
    return code, log.read_text()


def _in_image(rootfs: Path, path: Path) -> Path:
    """``path`` with its symlinks resolved inside the image, not on this host."""
    seen = 0
    while path.is_symlink():
        target = os.readlink(path)
        path = rootfs / target.lstrip("/") if target.startswith("/") else path.parent / target
        seen += 1
        assert seen < 10, path
    return path


def _stale_bytecode(rootfs: Path, tree: Path) -> list[str]:
    """Modules under ``tree`` whose bytecode is missing or older than their source: on a
    read-only root, each would be compiled again by every process."""
    stale = []
    for source in sorted(tree.rglob("*.py")):
        cached = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        if not cached.is_file():
            stale.append(f"{source.relative_to(rootfs)}: no bytecode")
            continue
        flags, mtime, size = struct.unpack("<4xIII", cached.read_bytes()[:16])
        if flags & 1:
            continue  # hash-based: valid whatever the timestamps
        st = _in_image(rootfs, source).stat()
        if (mtime, size) != (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF):
            stale.append(f"{source.relative_to(rootfs)}: bytecode out of date")
    return stale


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    yield api
    api.close()


PROBE = """
import errno, os
for path in ("/probe", "/opt/flux-oci-trigger/probe", "/etc/probe"):
    try:
        open(path, "w").close()
        print("wrote", path)
    except OSError as exc:
        print("refused", path, errno.errorcode[exc.errno])
open("/tmp/probe", "w").close()
print("uid", os.getuid(), "wrote /tmp/probe")
import ssl
trusted = ssl.create_default_context().cert_store_stats()["x509_ca"]
print("system trust store:", "loaded" if trusted > 100 else trusted)
"""


def test_the_run_has_a_read_only_root_and_a_writable_tmp(
    built: Built, rootfs: Path, tmp_path: Path
) -> None:
    """What the exporter's run relies on, seen from the image's own python3."""
    probe = replace(built.image, config={**built.image.config, "Entrypoint": ["python3", "-c"]})
    (tmp_path / "stage").mkdir()
    log = tmp_path / "probe.log"
    proc = run_read_only(rootfs, probe, [PROBE], tmp_files=tmp_path / "stage", log=log)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        reap(proc, 1.0)
    assert log.read_text().splitlines() == [
        "refused /probe EROFS",
        "refused /opt/flux-oci-trigger/probe EROFS",
        "refused /etc/probe EROFS",
        "uid 65532 wrote /tmp/probe",
        "system trust store: loaded",  # what the registry client's TLS starts from
    ]
    assert not (rootfs / "tmp" / "probe").exists()  # the tmpfs went with the run


def test_help_and_version(built: Built, rootfs: Path, tmp_path: Path) -> None:
    code, out = _run(rootfs, built.image, ["--help"], tmp_path)
    assert code == 0, out
    assert out.startswith("Usage: flux-oci-trigger [OPTIONS] COMMAND [ARGS]..."), out
    for command in ("check", "notify", "run", "select", "tags"):
        assert re.search(rf"^  {command} ", out, re.MULTILINE), command
    code, out = _run(rootfs, built.image, ["--version"], tmp_path)
    assert code == 0, out
    assert PYPROJECT["version"] in out


# What GitLab's runner does with a job's image (entrypoint [""]; ci/gitlab/notify.yml): find a
# shell, write a file variable such as the agent's KUBECONFIG under the project's .tmp, then
# run the script's lines with errexit.
CI_JOB = """
if set -o | grep pipefail > /dev/null; then set -o pipefail; fi; set -o errexit
mkdir -p "/tmp/builds/app.tmp"
printf '%s' 'apiVersion: v1' > "/tmp/builds/app.tmp/KUBECONFIG"
export KUBECONFIG="/tmp/builds/app.tmp/KUBECONFIG"
echo "section_start:$(date +%s):step_script"
set -f
set -- --version
flux-oci-trigger "$@"
"""


def test_a_ci_job_runs_in_the_image_through_its_sh(
    built: Built, rootfs: Path, tmp_path: Path
) -> None:
    for shell in ("/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash", "/usr/local/bin/sh"):
        assert not (rootfs / shell.lstrip("/")).exists()  # so GitLab takes the next: /usr/bin/sh
    job = replace(built.image, config={**built.image.config, "Entrypoint": ["/usr/bin/sh", "-c"]})
    code, out = _run(rootfs, job, [CI_JOB], tmp_path)
    assert code == 0, out
    assert re.fullmatch(r"section_start:\d+:step_script\n.*\b0\.1\.0\b.*\n", out), out


@pytest.mark.cluster
def test_runs_as_uid_65532_on_a_read_only_root_and_triggers_flux(
    built: Built,
    rootfs: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    api: client.ApiClient,
    tmp_path: Path,
) -> None:
    with Pusher(registry.base_url) as push:
        old = push.flux_artifact("image/app", "v1.0.0", created=1_700_000_000)
        new = push.flux_artifact("image/app", "v1.1.0", created=1_700_000_100)
    ns = namespace(api, "image-run")
    oci_repository(
        api, ns, "app", f"oci://{registry.host}/image/app", {"semver": ">=1.0.0"},
        {PREFIX + "enabled": "true"}, applied=f"v1.0.0@{old.digest}",
    )  # fmt: skip
    _stage_kubeconfig(control_plane.kubeconfig, tmp_path / "stage")
    port = free_port()
    log = tmp_path / "exporter.log"
    proc = run_read_only(
        rootfs, built.image,
        ["run", "--kubeconfig", "/tmp/kube/kubeconfig", "--listen", f"127.0.0.1:{port}",
         "--namespace", ns, "--log-format", "json"],
        tmp_files=tmp_path / "stage", log=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, ConnectionError):
                return False

        wait(ready, timeout=60, what="/readyz from the image")

        # the image's own process: its root, its user, no capabilities
        assert Path(f"/proc/{proc.pid}/root").readlink() == rootfs
        status = _status(proc.pid)
        assert status["Uid"].split() == ["65532"] * 4
        assert status["Gid"].split() == ["65532"] * 4
        assert status["Groups"].split() in ([], ["65532"])
        assert int(status["CapEff"], 16) == 0
        mounts = _mounts(proc.pid)
        assert "ro" in mounts["/"][0].split(","), mounts["/"]
        assert mounts["/tmp"][1] == "tmpfs"

        # it works: the object is checked through the registry and Flux is asked to reconcile
        labels = {"kind": "OCIRepository", "namespace": ns, "name": "app"}
        wait(lambda: sample(url, "flux_oci_target_state", {**labels, "state": "pending"}) == 1,
             timeout=60, what="state pending")  # fmt: skip
        assert sample(url, "flux_oci_reconcile_requests_total", labels) == 1
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, ns, "ocirepositories", "app"
        )
        assert isinstance(obj, dict)
        assert obj["metadata"]["annotations"][PREFIX + "requested-revision"] == (
            f"v1.1.0@{new.digest}"
        )
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
            assert resp.status == 200
        time.sleep(2)  # a few more loop ticks on the read-only root
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        reap(proc)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert not re.search(r"Read-only file system|Errno 30|Permission denied", text), text
    levels = [json.loads(ln).get("level") for ln in text.splitlines() if ln.startswith("{")]
    assert levels and "error" not in levels, text


@pytest.mark.cluster
def test_check_reports_each_target_from_the_image(
    built: Built,
    rootfs: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    api: client.ApiClient,
    tmp_path: Path,
) -> None:
    with Pusher(registry.base_url) as push:
        old = push.flux_artifact("image/check", "v1.0.0")
        push.flux_artifact("image/check", "v1.1.0")
    ns = namespace(api, "image-check")
    oci_repository(
        api, ns, "app", f"oci://{registry.host}/image/check", {"semver": ">=1.0.0"},
        {PREFIX + "enabled": "true"}, applied=f"v1.0.0@{old.digest}",
    )  # fmt: skip
    _stage_kubeconfig(control_plane.kubeconfig, tmp_path / "stage")
    code, out = _run(
        rootfs, built.image,
        ["check", "--kubeconfig", "/tmp/kube/kubeconfig", "--namespace", ns, "--output", "json"],
        tmp_path, tmp_path / "stage",
    )  # fmt: skip
    assert code == 0, out
    (row,) = json.loads(out)
    assert (row["name"], row["state"], row["would_request"]) == ("app", "behind", True)
    assert row["freshest"].startswith("v1.1.0@sha256:")


@pytest.fixture
def https_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    if registry_binary("debian") is None:
        message = "docker-registry is missing: run scripts/install-packages"
        if os.environ.get("FOT_REQUIRE_CLUSTER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with start_registry(tmp_path_factory.mktemp("https-registry"), tls="server") as registry:
        with Pusher(registry.base_url, context=registry.ssl_context()) as push:
            push.flux_artifact("image/tls", "v1.0.0")
        yield registry


def test_tags_over_tls_trusts_the_ca_it_is_given_and_no_other(
    built: Built, rootfs: Path, https_registry: RunningRegistry, tmp_path: Path
) -> None:
    """OpenSSL in the image: the system trust store is loaded and, not holding the
    registry's private CA, refuses it; with --ca-file added to it, the listing works."""
    assert https_registry.tls is not None
    stage = tmp_path / "stage"
    stage.mkdir()
    shutil.copy(https_registry.tls.ca, stage / "ca.crt")
    ref = f"oci://{https_registry.host}/image/tls"
    code, out = _run(rootfs, built.image, ["tags", ref, "--ca-file", "/tmp/ca.crt",
                                           "--output", "json"], tmp_path, stage)  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["tags"] == ["v1.0.0"]
    code, out = _run(rootfs, built.image, ["tags", ref], tmp_path, stage)
    assert code == 3, out
    assert "TLS certificate verification failed" in out and "Traceback" not in out, out


def test_labels_name_the_source_version_and_commit(built: Built) -> None:
    labels = built.image.config["Labels"]
    assert labels["org.opencontainers.image.source"] == (
        "https://gitlab.com/flux-oci-trigger/flux-oci-trigger"
    )
    assert labels["org.opencontainers.image.version"] == PYPROJECT["version"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.title"] == PYPROJECT["name"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    base = labels["org.opencontainers.image.base.name"]
    assert base.startswith("localhost/flux-oci-trigger-base:")  # scripts/build-image's


def test_root_holds_the_runtime_and_busybox_and_nothing_of_a_distribution(
    rootfs: Path,
) -> None:
    usr_bin = {p.name: p for p in (rootfs / "usr" / "bin").iterdir()}
    assert (rootfs / "bin").readlink() == Path("usr/bin")  # merged /usr, as on Debian
    assert usr_bin["python3"].readlink() == Path("python3.11")
    own = {name for name, p in usr_bin.items() if not p.is_symlink()}
    assert own == {"python3.11", "busybox"}, own
    busybox = Path("/usr/bin/busybox")
    applets = {name for name, p in usr_bin.items() if p.is_symlink() and p.readlink() == busybox}
    assert {"sh", "mkdir", "cat", "grep", "date", "hostname"} <= applets  # what GitLab's job uses
    assert set(usr_bin) == {"python3", "python3.11", "busybox"} | applets
    for absent in ("usr/bin/bash", "usr/bin/perl", "usr/bin/dpkg", "usr/bin/apt-get",
                   "usr/sbin", "usr/share", "usr/lib/x86_64-linux-gnu/gconv", "var/lib/apt",
                   "var/lib/dpkg/status", "var/cache", "usr/lib/python3.11/test",
                   "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/lib2to3",
                   "usr/lib/python3.11/distutils", "usr/lib/python3.11/site-packages"):  # fmt: skip
        assert not (rootfs / absent).exists(), absent
    libraries = {p.name for p in (rootfs / "usr" / "lib" / "x86_64-linux-gnu").glob("lib*.so*")}
    assert {"libc.so.6", "libssl.so.3", "libcrypto.so.3", "libz.so.1", "libffi.so.8"} <= libraries
    assert not {"libsqlite3.so.0", "libreadline.so.8", "libncursesw.so.6", "libtinfo.so.6",
                "libdb-5.3.so", "libnsl.so.2"} & libraries  # fmt: skip

    assert "nonroot:x:65532:65532:" in (rootfs / "etc" / "passwd").read_text()
    assert "nonroot:x:65532:" in (rootfs / "etc" / "group").read_text()
    assert (rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt").stat().st_size > 100_000
    assert "bookworm" in _in_image(rootfs, rootfs / "etc" / "os-release").read_text()
    records = {p.name for p in (rootfs / "var" / "lib" / "dpkg" / "status.d").iterdir()}
    assert {"libc6", "libssl3", "python3.11-minimal", "libpython3.11-stdlib", "busybox"} <= records
    tmp = (rootfs / "tmp").stat()
    assert tmp.st_mode & 0o7777 == 0o1777 and tmp.st_uid == 0
    assert _stale_bytecode(rootfs, rootfs / "usr" / "lib" / "python3.11") == []


def test_image_holds_the_locked_dependencies_and_no_build_tools(built: Built, rootfs: Path) -> None:
    cfg = built.image.config
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["flux-oci-trigger"] and cfg["Cmd"] == ["run"]
    assert set(cfg["ExposedPorts"]) == {"9798/tcp", "9799/tcp"}
    assert built.image.env["PATH"].startswith("/opt/flux-oci-trigger/bin:/usr/")

    (site,) = (rootfs / "opt" / "flux-oci-trigger" / "lib").glob("python3*/site-packages")
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[name.lower().replace("_", "-")] = version
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)", LOCK.read_text(), re.MULTILINE))
    build = build_only()
    assert build == ["setuptools"]
    expected = {name: v for name, v in pins.items() if name not in build}
    assert installed == {**expected, "flux-oci-trigger": "0.1.0"}
    # what nothing imports: the asyncio client (its aiohttp is not installed), tests, stubs
    assert not (site / "kubernetes" / "aio").exists()
    assert not (site / "prometheus_client" / "aiohttp").exists()
    assert not list(site.rglob("*_test.py")) and not list(site.rglob("*.pyi"))
    assert list((site / "exporter").rglob("*.py"))
    assert _stale_bytecode(rootfs, site) == []  # compiled at build time: root is read-only
    owned_by_root = (rootfs / "opt" / "flux-oci-trigger" / "bin" / "flux-oci-trigger").stat()
    assert owned_by_root.st_uid == 0 and not owned_by_root.st_mode & 0o022

    assert 0 < built.image.size < SIZE_BUDGET, built.output


def test_pushed_to_a_registry_its_manifest_reads_back(
    built: Built,
    rootfs: Path,
    registry: RunningRegistry,
    tmp_path: Path,
    figures: dict[str, str],
) -> None:
    pushed = subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format=oci",
         f"containers-storage:{built.image.name}",
         f"docker://{registry.host}/flux-oci-trigger:test"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    with httpx.Client(base_url=registry.base_url, timeout=30) as http:
        resp = http.get("/v2/flux-oci-trigger/manifests/test", headers={"Accept": OCI_MANIFEST})
        resp.raise_for_status()
        manifest = resp.json()
        assert manifest["mediaType"] == OCI_MANIFEST
        assert manifest["config"]["digest"] == f"sha256:{built.image.id}"
        blob = http.get(f"/v2/flux-oci-trigger/blobs/{manifest['config']['digest']}")
        blob.raise_for_status()
        assert blob.json()["config"]["User"] == "65532:65532"
        for layer in manifest["layers"]:
            head = http.head(f"/v2/flux-oci-trigger/blobs/{layer['digest']}")
            assert head.status_code == 200
            assert int(head.headers["Content-Length"]) == layer["size"]
    compressed = sum(layer["size"] for layer in manifest["layers"])
    assert 0 < compressed < COMPRESSED_BUDGET
    figures["pushed"] = (
        f"{compressed} bytes in {len(manifest['layers'])} compressed layers "
        f"({' + '.join(str(layer['size']) for layer in manifest['layers'])})"
    )

    # the image's own registry client finds what was pushed
    log = tmp_path / "tags.log"
    stage = tmp_path / "stage"
    stage.mkdir()
    proc = run_read_only(
        rootfs, built.image,
        ["tags", f"oci://{registry.host}/flux-oci-trigger", "--tag", "test", "--insecure",
         "--output", "json"],
        tmp_files=stage, log=log,
    )  # fmt: skip
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        reap(proc, 1.0)
    listed = json.loads(log.read_text())
    assert listed["tags"] == ["test"]
    assert listed["selected"]["digest"] == f"sha256:{hashlib.sha256(resp.content).hexdigest()}"
