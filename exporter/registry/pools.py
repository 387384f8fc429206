"""One HTTP connection pool per (registry, TLS options), plus a per-registry concurrency cap.

Per-request connection set-up dominates paginated listings (TLS handshakes cost more
than a page of tags), so every request to a registry with the same TLS settings reuses
one ``httpx.Client``. The semaphore bounds how many requests one exporter has in flight
against one registry, whatever the number of worker threads.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading

import httpx

from exporter.model import TLSOptions


def base_url(registry: str, tls: TLSOptions) -> str:
    """``https://host[:port]``; plain HTTP when the source allows it (Flux's ``insecure``)."""
    return f"{'http' if tls.insecure else 'https'}://{registry}"


def ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    """System trust store, extended with the source's CA bundle; optional client certificate."""
    context = ssl.create_default_context()
    if tls.ca_pem:
        context.load_verify_locations(cadata=tls.ca_pem.decode("ascii", errors="replace"))
    if tls.client_cert_pem and tls.client_key_pem:
        # The ssl module loads key pairs only from files: write them to a private temp dir.
        with tempfile.TemporaryDirectory(prefix="fot-tls-") as tmp:
            cert_path = os.path.join(tmp, "tls.crt")
            key_path = os.path.join(tmp, "tls.key")
            for path, data in ((cert_path, tls.client_cert_pem), (key_path, tls.client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            context.load_cert_chain(cert_path, key_path)
    return context


class Pools:
    """Lazily created clients keyed by (registry, TLS fingerprint); thread-safe."""

    def __init__(
        self,
        *,
        timeout: float,
        max_concurrency: int,
        user_agent: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._transport = transport  # tests only: httpx.MockTransport for unreproducible answers
        self._timeout = timeout
        self._max_concurrency = max_concurrency
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], httpx.Client] = {}
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._closed = False

    def client(self, registry: str, tls: TLSOptions) -> httpx.Client:
        key = (registry, tls.fingerprint())
        with self._lock:
            if self._closed:
                raise RuntimeError("registry client is closed")
            existing = self._clients.get(key)
            if existing is not None:
                return existing
        # Build outside the lock: loading a CA bundle is slow and must not block other registries.
        verify: ssl.SSLContext | bool = False if tls.insecure else ssl_context(tls)
        created = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(
                max_connections=self._max_concurrency + 2,
                max_keepalive_connections=self._max_concurrency,
            ),
            headers={"User-Agent": self._user_agent},
            follow_redirects=True,  # blob/manifest redirects to storage; tags never redirect
            transport=self._transport,
            trust_env=True,  # honour HTTPS_PROXY / NO_PROXY like Flux does
        )
        with self._lock:
            existing = self._clients.get(key)
            if existing is None and not self._closed:
                self._clients[key] = created
                return created
        created.close()
        if existing is None:
            raise RuntimeError("registry client is closed")
        return existing

    def semaphore(self, registry: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._semaphores.get(registry)
            if sem is None:
                sem = self._semaphores[registry] = threading.BoundedSemaphore(self._max_concurrency)
            return sem

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._closed = True
        for client in clients:
            client.close()
