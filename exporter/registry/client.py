"""The registry client the exporter uses: list tags, resolve a tag's digest, read creation time.

Thread-safe; one instance serves every worker. Pagination follows ``Link: <…>; rel="next"``
resolved against the request URL with its query kept opaque, capped in pages and in
bytes over all pages, checked for loops, and refused when it leaves the registry's origin
(credentials would follow it, and another server's tags would be merged). The first page
asks for ``n=1000``: the most distribution v3.1.0 accepts (it answers 400 above), which
v3.1.1+ and other registries clamp to their own page size, and which keeps a 10,000-tag
repository to ten round trips where GitLab.com or GHCR would otherwise page by 100.
``page_size=None`` lets the registry choose, as skopeo does: distribution then answers
everything at once, which is cheaper on a local v3 (it reads the whole tag directory for
every page). A registry that refuses ``n`` with 400 is asked once more without it.
Manifest creation times are content-addressed and cached for ever (bounded).

Digests must be ``sha256:`` + 64 or ``sha512:`` + 128 lower-case hex digits, and whenever
a manifest body was fetched its ``Docker-Content-Digest`` must be that body's digest.
URLs are formed before anything is sent: a repository URL or tag that no HTTP request can
carry (a control character in ``spec.url``) is a ``RegistryConfigError``.
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
from exporter.registry.errors import (
    RegistryConfigError,
    RegistryNotFound,
    RegistryProtocolError,
)
from exporter.registry.exchange import (
    DEADLINE,
    BodyTooLarge,
    Exchanger,
    NullObserver,
    RegistryObserver,
    Reply,
)
from exporter.registry.pools import (
    ConnectTo,
    Pools,
    base_url,
    origin,
    registry_origin,
    show_origin,
)
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
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


class RegistryClient:
    """``timeout`` bounds each connect, read and write; ``deadline`` a whole exchange (connect,
    headers and body), so a registry dripping its answer is cut off; both in seconds.
    ``max_response_bytes`` caps one body, ``max_listing_bytes`` all the pages of one listing.
    """

    def __init__(
        self,
        *,
        observer: RegistryObserver | None = None,
        timeout: float = 10.0,
        max_concurrency_per_registry: int = 4,
        max_pages: int = 1000,
        page_size: int | None = PAGE_SIZE,
        max_response_bytes: int = 8 << 20,
        max_listing_bytes: int = 8 << 20,
        deadline: float = DEADLINE,
        retries: int = 3,
        user_agent: str = f"flux-oci-trigger/{__version__}",
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy | None = None,
        auth_breaker: AuthBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        connect_to: ConnectTo | None = None,
    ) -> None:
        self._pools = Pools(
            timeout=timeout,
            max_concurrency=max_concurrency_per_registry,
            user_agent=user_agent,
            transport=transport,
            connect_to=connect_to,
        )
        exchanger = Exchanger(
            pools=self._pools,
            observer=observer or NullObserver(),
            policy=retry_policy or RetryPolicy(retries=retries),
            sleep=sleep,
            deadline=deadline,
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
        self._max_listing_bytes = max_listing_bytes
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
        first = _endpoint(repo, tls, "tags/list")
        url = first.copy_merge_params({"n": str(self._page_size)}) if self._page_size else first
        seen: set[str] = set()
        tags: list[str] = []
        try:
            return self._pages(repo, credentials, tls, first, url, tags, seen)
        except BaseException:
            tags.clear()  # a failed listing's traceback must not keep what it read
            seen.clear()
            raise

    def _pages(
        self,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
        first: httpx.URL,
        url: httpx.URL,
        tags: list[str],
        seen: set[str],
    ) -> list[str]:
        home = registry_origin(repo.registry, tls.insecure)
        pages = 0
        listed = 0  # bytes over all pages
        while True:
            pages += 1
            if pages > self._max_pages:
                raise RegistryProtocolError(f"{repo}: more than {self._max_pages} pages of tags")
            reply = self._page(repo, credentials, tls, url, listed)
            if reply.status == 400 and pages == 1 and url.params.get("n"):
                url = first  # a registry that refuses page sizes: let it choose
                reply = self._page(repo, credentials, tls, url, listed)
            self._check(repo, reply, "tags")
            listed += len(reply.body)
            tags.extend(_page_tags(repo, reply.body))
            next_url = _next_link(repo, reply)
            if next_url is None:
                return tags
            if origin(next_url) != home:
                raise RegistryProtocolError(
                    f"{repo}: the next page of tags is on another origin "
                    f"({show_origin(origin(next_url))}); not followed"
                )
            key = str(next_url)
            if key in seen:
                raise RegistryProtocolError(f"{repo}: tag pagination links loop")
            seen.add(key)
            url = next_url

    def _page(
        self,
        repo: RepositoryRef,
        credentials: Credentials,
        tls: TLSOptions,
        url: httpx.URL,
        listed: int,
    ) -> Reply:
        """One page of tags, its body capped by what is left of the listing's budget."""
        left = self._max_listing_bytes - listed
        cap = min(self._max_bytes, left)
        try:
            return self._get(repo, credentials, tls, url, _JSON, max_bytes=cap)
        except BodyTooLarge as exc:
            if cap == self._max_bytes:
                raise RegistryProtocolError(f"{repo}: tag list: {exc}") from exc
            raise RegistryProtocolError(
                f"{repo}: the tag listing exceeds the {self._max_listing_bytes} byte cap "
                "over all its pages"
            ) from exc

    def resolve_digest(
        self,
        repo: RepositoryRef,
        reference: str,
        credentials: Credentials = ANONYMOUS,
        tls: TLSOptions = SECURE,
    ) -> str:
        """The manifest digest ``reference`` (a tag) points at: what Flux records after '@'."""
        url = _endpoint(repo, tls, f"manifests/{reference}")
        reply = self._session.request(
            repo, credentials, tls, "HEAD", url, headers=_MANIFEST, max_bytes=self._max_bytes
        )
        self._check(repo, reply, f"manifest {reference}")
        digest: str | None = reply.headers.get("Docker-Content-Digest")
        if digest is None:  # some registries omit it on HEAD: hash the manifest ourselves
            reply = self._get(repo, credentials, tls, url, _MANIFEST)
            self._check(repo, reply, f"manifest {reference}")
            digest = _checked_header(repo, reply, reference) or _digest("sha256", reply.body)
        elif not _DIGEST.fullmatch(digest):
            raise RegistryProtocolError(f"{repo}: {_MALFORMED_DIGEST} for {reference}")
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
        if not _DIGEST.fullmatch(digest):
            raise RegistryProtocolError(f"{repo}: not a sha256 or sha512 digest: {digest!a}")
        url = _endpoint(repo, tls, f"manifests/{digest}")
        reply = self._get(repo, credentials, tls, url, _MANIFEST)
        self._check(repo, reply, f"manifest {digest}")
        if _digest(digest.split(":", 1)[0], reply.body) != digest:
            raise RegistryProtocolError(f"{repo}: manifest content does not match {digest}")
        _checked_header(repo, reply, digest)
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
        url: httpx.URL,
        headers: dict[str, str],
        max_bytes: int | None = None,
    ) -> Reply:
        return self._session.request(
            repo,
            credentials,
            tls,
            "GET",
            url,
            headers=headers,
            max_bytes=self._max_bytes if max_bytes is None else max_bytes,
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
    except (ValueError, RecursionError) as exc:  # RecursionError: nested beyond reason
        raise RegistryProtocolError(f"{repo}: tag list is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise RegistryProtocolError(f"{repo}: tag list is not a JSON object")
    tags = doc.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryProtocolError(f"{repo}: tags is not a list of strings")
    return tags


def _endpoint(repo: RepositoryRef, tls: TLSOptions, tail: str) -> httpx.URL:
    """``<base>/v2/<path>/<tail>``, refused up front when no request can carry it (control
    characters, a host IDNA cannot encode, a port out of range)."""
    try:
        url = httpx.URL(f"{base_url(repo.registry, tls)}/v2/{repo.path}/{tail}")
        url.raw_host.decode("ascii").encode("idna")  # what the resolver will be given
        if not url.host or (url.port is not None and not 0 < url.port < 65536):
            raise httpx.InvalidURL("no host, or a port out of range")
    except (httpx.InvalidURL, UnicodeError) as exc:
        shown = ascii(f"{repo}/{tail}")[1:-1]  # control characters escaped, not printed
        raise RegistryConfigError(
            f"{shown}: not a URL an HTTP request can carry ({type(exc).__name__})"
        ) from exc
    return url


def _next_link(repo: RepositoryRef, reply: Reply) -> httpx.URL | None:
    """The ``rel="next"`` target, resolved against the URL that answered; None on the last page."""
    for header in reply.headers.get_list("Link"):
        for match in _LINK.finditer(header):
            rels = _REL.search(match.group(2))
            if rels and "next" in rels.group(1).lower().split():
                try:
                    url = reply.url.join(match.group(1).strip())
                    origin(url)
                except (httpx.InvalidURL, UnicodeError) as exc:
                    raise RegistryProtocolError(f"{repo}: unusable tag pagination link") from exc
                return url
    return None


_MALFORMED_DIGEST = "Docker-Content-Digest is not sha256:<64 hex> or sha512:<128 hex>"


def _digest(algorithm: str, body: bytes) -> str:
    return f"{algorithm}:{_HASHES[algorithm](body).hexdigest()}"


def _checked_header(repo: RepositoryRef, reply: Reply, reference: str) -> str | None:
    """The reply's ``Docker-Content-Digest`` if any, once checked against the body it came with."""
    header: str | None = reply.headers.get("Docker-Content-Digest")
    if header is None:
        return None
    if not _DIGEST.fullmatch(header):
        raise RegistryProtocolError(f"{repo}: {_MALFORMED_DIGEST} for {reference}")
    if _digest(header.split(":", 1)[0], reply.body) != header:
        raise RegistryProtocolError(
            f"{repo}: Docker-Content-Digest of {reference} does not match the manifest sent"
        )
    return header


def _created(repo: RepositoryRef, body: bytes) -> float | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
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
