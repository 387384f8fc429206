"""Push Flux-style OCI artifacts and Helm charts to a registry over the distribution API.

Used by tests, benchmarks and the demo to create real content: the same media types
``flux push artifact`` and ``helm push`` write, so the real source-controller can pull them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import ssl
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FLUX_CONFIG = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT = "application/vnd.cncf.flux.content.v1.tar+gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def targz(files: Mapping[str, bytes], mtime: int = 0) -> bytes:
    """A deterministic tar.gz of ``files`` (same input, same bytes, same digest)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = mtime
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass(frozen=True)
class Pushed:
    repository: str
    tag: str
    digest: str  # manifest digest: what Flux puts after '@' in status.artifact.revision


class Pusher:
    """Pushes to one registry at ``base_url`` (``http://127.0.0.1:PORT``)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=dict(headers or {}), timeout=30.0,
            verify=context if context is not None else True,
        )  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self._http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
            return digest
        start = self._http.post(f"/v2/{repository}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        put = self._http.put(
            f"{location}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        put.raise_for_status()
        return digest

    def manifest(self, repository: str, tag: str, manifest: Mapping[str, object]) -> Pushed:
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        resp = self._http.put(
            f"/v2/{repository}/manifests/{tag}",
            content=body,
            headers={"Content-Type": str(manifest["mediaType"])},
        )
        resp.raise_for_status()
        return Pushed(repository, tag, sha256_digest(body))

    def _image(
        self,
        repository: str,
        tag: str,
        config_type: str,
        config: bytes,
        layer_type: str,
        layer: bytes,
        annotations: Mapping[str, str],
    ) -> Pushed:
        config_digest = self.blob(repository, config)
        layer_digest = self.blob(repository, layer)
        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(layer)}],
            "annotations": dict(annotations),
        }
        return self.manifest(repository, tag, manifest)

    def flux_artifact(
        self,
        repository: str,
        tag: str,
        files: Mapping[str, bytes] | None = None,
        created: float | None = None,
        source: str = "https://example.invalid/app",
        revision: str | None = None,
    ) -> Pushed:
        """An artifact as ``flux push artifact`` writes it (a tar.gz of manifests)."""
        content = files or {
            "configmap.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"
                f"data:\n  version: {tag!r}\n"
            ).encode()
        }
        stamp = time.gmtime(created if created is not None else time.time())
        annotations = {
            "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp),
            "org.opencontainers.image.source": source,
            "org.opencontainers.image.revision": revision or f"{tag}@sha1:{'0' * 40}",
        }
        return self._image(
            repository, tag, FLUX_CONFIG, b"{}", FLUX_CONTENT, targz(content), annotations
        )

    def helm_chart(self, repository: str, name: str, version: str) -> Pushed:
        """A chart as ``helm push`` writes it; the tag is the version with ``+`` as ``_``."""
        chart_yaml = f"apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n"
        template = (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
            "data:\n  chartVersion: {{ .Chart.Version | quote }}\n"
        )
        layer = targz(
            {
                f"{name}/Chart.yaml": chart_yaml.encode(),
                f"{name}/values.yaml": b"{}\n",
                f"{name}/templates/configmap.yaml": template.encode(),
            }
        )
        config = json.dumps({"apiVersion": "v2", "name": name, "version": version}).encode()
        annotations = {
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tag = version.replace("+", "_")
        repo = f"{repository}/{name}" if repository else name
        return self._image(repo, tag, HELM_CONFIG, config, HELM_CONTENT, layer, annotations)
