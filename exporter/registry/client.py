"""The registry client the exporter uses: list tags, resolve a tag's digest, read creation time.

Thread-safe; one instance serves every worker. Pagination follows ``Link: <…>; rel="next"``
resolved against the request URL with its query kept opaque, capped in pages and checked
for loops. The first page asks for ``n=1000``: the most distribution v3.1.0 accepts (it
answers 400 above), which v3.1.1+ and other registries clamp to their own page size, and
which keeps a 10,000-tag repository to ten round trips where GitLab.com or GHCR would
otherwise page by 100. ``page_size=None`` lets the registry choose, as skopeo does:
distribution then answers everything at once, which is cheaper on a local v3 (it reads
the whole tag directory for every page). A registry that refuses ``n`` with 400 is asked
once more without it. Manifest creation times are content-addressed and cached for
ever (bounded).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import httpx

from exporter import __version__
from exporter.model import ANONYMOUS, Credentials, RepositoryRef, TLSOptions
from exporter.registry.auth import TokenCache
from exporter.registry.backoff import AuthBreaker, RetryPolicy
from exporter.registry.errors import RegistryNotFound, RegistryProtocolError
from exporter.registry.exchange import Exchanger, NullObserver, RegistryObserver, Reply
from exporter.registry.pools import Pools, base_url
from exporter.registry.session import Session

__all__ = ["MANIFEST_ACCEPT", "PAGE_SIZE", "RegistryClient", "RegistryObserver"]

PAGE_SIZE = 1000
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
CREATED_ANNOTATION = "org.opencontainers.image.created"
_JSON = {"Accept": "application/json"}
_MANIFEST = {"Accept": MANIFEST_ACCEPT}
_TIMES_CACHE_SIZE = 65536
SECURE = TLSOptions()  # https, system trust store
_LINK = re.compile(r"<([^>]*)>([^<]*)")  # <target>; params (the query stays opaque)
_REL = re.compile(r"""rel\s*=\s*"?([^";,]*)"?""", re.IGNORECASE)


class RegistryClient:
    def __init__(
        self,
        *,
        observer: RegistryObserver | None = None,
        timeout: float = 10.0,
        max_concurrency_per_registry: int = 4,
        max_pages: int = 1000,
        page_size: int | None = PAGE_SIZE,
        max_response_bytes: int = 8 << 20,
        retries: int = 3,
        user_agent: str = f"flux-oci-trigger/{__version__}",
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy | None = None,
        auth_breaker: AuthBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._pools = Pools(
            timeout=timeout,
            max_concurrency=max_concurrency_per_registry,
            user_agent=user_agent,
            transport=transport,
        )
        exchanger = Exchanger(
            pools=self._pools,
            observer=observer or NullObserver(),
            policy=retry_policy or RetryPolicy(retries=retries),
            sleep=sleep,
        )
        self._session = Session(
            exchanger=exchanger,
            breaker=auth_breaker or AuthBreaker(clock=clock),
            tokens=TokenCache(clock=clock),
            clock=clock,
        )
        self._max_pages = max_pages
        self._page_size = page_size
        self._max_bytes = max_response_bytes
        self._times_lock = threading.Lock()
        self._times: OrderedDict[tuple[str, str, str], float | None] = OrderedDict()

    def close(self) -> None:
        self._pools.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_tags(
        self, repo: RepositoryRef, credentials: Credentials = ANONYMOUS, tls: TLSOptions = SECURE
    ) -> list[str]:
        """Every tag of ``repo``, in the registry's order. ``[]`` for a repository without tags."""
        first = f"{base_url(repo.registry, tls)}/v2/{repo.path}/tags/list"
        url = httpx.URL(first, params={"n": str(self._page_size)} if self._page_size else None)
        seen: set[str] = set()
        tags: list[str] = []
        pages = 0
        while True:
            pages += 1
            if pages > self._max_pages:
                raise RegistryProtocolError(f"{repo}: more than {self._max_pages} pages of tags")
            reply = self._get(repo, credentials, tls, url, _JSON)
            if reply.status == 400 and pages == 1 and url.params.get("n"):
                url = httpx.URL(first)  # a registry that refuses page sizes: let it choose
                reply = self._get(repo, credentials, tls, url, _JSON)
            self._check(repo, reply, "tags")
            tags.extend(_page_tags(repo, reply.body))
            next_url = _next_link(reply)
            if next_url is None:
                return tags
            key = str(next_url)
            if key in seen:
                raise RegistryProtocolError(f"{repo}: tag pagination links loop")
            seen.add(key)
            url = next_url

    def resolve_digest(
        self,
        repo: RepositoryRef,
        reference: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = SECURE,
    ) -> str:
        """The manifest digest ``reference`` (a tag) points at: what Flux records after '@'."""
        url = f"{base_url(repo.registry, tls)}/v2/{repo.path}/manifests/{reference}"
        reply = self._session.request(
            repo, credentials, tls, "HEAD", url, headers=_MANIFEST, max_bytes=self._max_bytes
        )
        self._check(repo, reply, f"manifest {reference}")
        digest: str | None = reply.headers.get("Docker-Content-Digest")
        if digest is None:  # some registries omit it on HEAD: hash the manifest ourselves
            reply = self._get(repo, credentials, tls, url, _MANIFEST)
            self._check(repo, reply, f"manifest {reference}")
            digest = reply.headers.get("Docker-Content-Digest") or _sha256(reply.body)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise RegistryProtocolError(f"{repo}: unexpected digest format for {reference}")
        return digest

    def manifest_created(
        self,
        repo: RepositoryRef,
        digest: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = SECURE,
    ) -> float | None:
        """Unix seconds from the manifest's ``org.opencontainers.image.created``; None if unset."""
        key = (repo.registry, repo.path, digest)
        with self._times_lock:
            if key in self._times:
                self._times.move_to_end(key)
                return self._times[key]
        url = f"{base_url(repo.registry, tls)}/v2/{repo.path}/manifests/{digest}"
        reply = self._get(repo, credentials, tls, url, _MANIFEST)
        self._check(repo, reply, f"manifest {digest}")
        if digest.startswith("sha256:") and _sha256(reply.body) != digest:
            raise RegistryProtocolError(f"{repo}: manifest content does not match {digest}")
        created = _created(repo, reply.body)
        with self._times_lock:
            self._times[key] = created
            if len(self._times) > _TIMES_CACHE_SIZE:
                self._times.popitem(last=False)
        return created

    def _get(
        self,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
        url: str | httpx.URL,
        headers: dict[str, str],
    ) -> Reply:
        return self._session.request(
            repo, credentials, tls, "GET", url, headers=headers, max_bytes=self._max_bytes
        )

    @staticmethod
    def _check(repo: RepositoryRef, reply: Reply, what: str) -> None:
        if reply.status == 200:
            return
        if reply.status == 404:
            raise RegistryNotFound(f"{repo}: {what} not found")
        raise RegistryProtocolError(f"{repo}: {what}: unexpected HTTP {reply.status}")


def _page_tags(repo: RepositoryRef, body: bytes) -> list[str]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryProtocolError(f"{repo}: tag list is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise RegistryProtocolError(f"{repo}: tag list is not a JSON object")
    tags = doc.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryProtocolError(f"{repo}: tags is not a list of strings")
    return tags


def _next_link(reply: Reply) -> httpx.URL | None:
    """The ``rel="next"`` target, resolved against the URL that answered; None on the last page."""
    for header in reply.headers.get_list("Link"):
        for match in _LINK.finditer(header):
            rels = _REL.search(match.group(2))
            if rels and "next" in rels.group(1).lower().split():
                return reply.url.join(match.group(1).strip())
    return None


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _created(repo: RepositoryRef, body: bytes) -> float | None:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryProtocolError(f"{repo}: manifest is not valid JSON") from exc
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    value = annotations.get(CREATED_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # an unparseable annotation means "unknown", as in Flux
    if when.tzinfo is None or when.year <= 1:
        return None  # Go's zero time: older artifacts carry it, it means "unknown"
    return when.timestamp()
