"""The built image, run as a container runtime would run it: its entrypoint as uid 65532 on
a read-only root filesystem (tmpfs on /tmp), against the real API server and registry; and
pushed to a registry, its manifest read back.

The image is built from this tree by scripts/build-image (tests/image/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client, config

from devenv.image import LOCK, build_only, run_read_only
from devenv.kubeapi import ControlPlane
from devenv.ports import free_port
from devenv.procs import reap
from devenv.push import Pusher
from devenv.registry import RunningRegistry
from tests.fixtures.objects import GROUP, VERSION, namespace, oci_repository
from tests.image.conftest import Built
from tests.scrape import sample, wait

pytestmark = pytest.mark.image

PREFIX = "oci-trigger.gitlab.com/"
SIZE_BUDGET = 280_000_000  # bytes, uncompressed; measured 230 MB on the Debian base
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


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
    ]
    assert not (rootfs / "tmp" / "probe").exists()  # the tmpfs went with the run


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
    assert not (site / "kubernetes" / "aio").exists()
    sources = list((site / "exporter").rglob("*.py"))  # compiled at build time: root is read-only
    assert sources and all(
        (py.parent / "__pycache__" / f"{py.stem}.cpython-311.pyc").is_file() for py in sources
    )
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
    assert 0 < compressed < built.image.size
    figures["pushed"] = f"{compressed} bytes in {len(manifest['layers'])} compressed layers"

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
