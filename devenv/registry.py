"""Start real OCI registries on loopback as child processes of the caller.

Two implementations, because they differ where it matters: Debian's ``docker-registry``
(distribution 2.8) ignores ``n``/``last`` and never paginates, while distribution v3
sorts and paginates tag lists. Either runs with no auth, token auth (backed by
``devenv.tokenserver``) or htpasswd Basic auth, filesystem storage under ``workdir``,
deletes enabled, and optional push notifications.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml

from devenv.pki import TlsFiles, write_tls
from devenv.ports import free_port, wait_for_http
from devenv.tokenserver import TokenServer
from devenv.tools import tool_dir

DEBIAN_BINARY = Path("/usr/bin/docker-registry")

Implementation = Literal["debian", "v3"]
AuthMode = Literal["none", "token", "htpasswd"]


def registry_binary(implementation: Implementation) -> Path | None:
    """Where the implementation's binary is, or None when it is not installed/built."""
    if implementation == "debian":
        found = DEBIAN_BINARY if DEBIAN_BINARY.exists() else shutil.which("docker-registry")
    else:
        found = Path(
            os.environ.get("FOT_DISTRIBUTION_BIN") or tool_dir("distribution") / "registry"
        )
    path = Path(found) if found else None
    return path if path is not None and path.is_file() and os.access(path, os.X_OK) else None


@dataclass
class RunningRegistry:
    implementation: Implementation
    host: str  # "127.0.0.1:PORT"
    process: subprocess.Popen[bytes]
    log_path: Path
    auth: AuthMode = "none"
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None
    tls: TlsFiles | None = None  # served over HTTPS with this CA (and client CA) when set

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """Trusts the registry's CA and presents the client certificate; None over HTTP."""
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return context

    def push_headers(self, repository: str) -> dict[str, str]:
        """Headers that let ``devenv.push.Pusher`` write to ``repository``."""
        if self.token_server is not None:
            token = self.token_server.mint("pusher", [f"repository:{repository}:pull,push,delete"])
            return {"Authorization": f"Bearer {token}"}
        if self.users:
            name, password = next(iter(self.users.items()))
            raw = base64.b64encode(f"{name}:{password}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None

    def __enter__(self) -> RunningRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_registry(
    workdir: Path,
    *,
    implementation: Implementation = "debian",
    auth: AuthMode = "none",
    users: Mapping[str, str] | None = None,
    notifications_url: str | None = None,
    notification_headers: Mapping[str, str] | None = None,
    anonymous_pull: bool = False,
    refresh_tokens: Mapping[str, str] | None = None,
    tls: Literal["none", "server", "mutual"] = "none",
) -> RunningRegistry:
    """``tls``: plain HTTP, HTTPS with a fresh CA, or HTTPS requiring a client certificate
    signed by that CA (``RunningRegistry.tls`` has the files)."""
    binary = registry_binary(implementation)
    if binary is None:
        raise FileNotFoundError(f"no {implementation} registry binary found")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    http: dict[str, Any] = {"addr": host, "secret": secrets.token_hex(16)}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    tls_files = write_tls(workdir / "tls") if tls != "none" else None
    if tls_files is not None:
        http["tls"] = {"certificate": str(tls_files.cert), "key": str(tls_files.key)}
        if tls == "mutual":
            http["tls"]["clientcas"] = [str(tls_files.ca)]
    token_server: TokenServer | None = None
    if auth == "token":
        token_server = TokenServer(
            workdir,
            users=users or {},
            anonymous_pull=anonymous_pull,
            refresh_tokens=refresh_tokens,
        )
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
    elif auth == "htpasswd":
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                for name, pw in (users or {}).items()
            )
        )
        config["auth"] = {"htpasswd": {"realm": "fot-registry", "path": str(htpasswd)}}
    if notifications_url is not None:
        config["notifications"] = {
            "endpoints": [
                {
                    "name": "fot",
                    "url": notifications_url,
                    "headers": {k: [v] for k, v in (notification_headers or {}).items()},
                    "timeout": "2s",
                    "threshold": 5,
                    "backoff": "1s",
                    "ignore": {"mediatypes": ["application/octet-stream"], "actions": ["pull"]},
                }
            ]
        }
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "registry.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OTEL_SDK_DISABLED": "true"}
    env["OTEL_TRACES_EXPORTER"] = "none"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    running = RunningRegistry(
        implementation, host, process, log_path, auth, dict(users or {}), token_server, tls_files
    )
    try:
        wait_for_http(f"{running.base_url}/v2/", timeout=30, context=running.ssl_context())
    except BaseException:
        running.stop()
        raise
    return running
