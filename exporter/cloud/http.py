"""The one HTTP client of the cloud exchanges: STS, ECR, metadata servers, Entra ID, ACR.

Like Flux's (fluxcd/pkg auth ``GetHTTPClient``) it gives up after 10 seconds and honours
the proxy variables; it also bounds each whole exchange (``Deadline``, as the registry
client does) and each body (1 MiB), follows no redirect (requests carry tokens in their
bodies), and trusts the CA bundle the standard variables name: ``REQUESTS_CA_BUNDLE``, else
``SSL_CERT_FILE``, else the system's. Every failure of the HTTP stack becomes
``CloudUnavailable`` naming the endpoint's origin, never its query or a body.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from exporter import __version__
from exporter.cloud.errors import CloudAuthError, CloudUnavailable
from exporter.registry.pools import ConnectTo, Deadline, deadline_transport, origin, show_origin

TIMEOUT = 10.0  # seconds, a whole exchange: Flux's token client timeout
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self, what: str) -> dict[str, Any]:
        """The body as a JSON object; ``CloudAuthError`` naming ``what`` otherwise."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            raise CloudAuthError(f"{what}: the answer is not JSON") from None
        if not isinstance(doc, dict):
            raise CloudAuthError(f"{what}: the answer is not a JSON object")
        return doc

    def json_or_empty(self) -> dict[str, Any]:
        """The body as a JSON object, or ``{}`` (an error answer need not be JSON)."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def error_text(self, error: str, description: str, *secrets: str) -> str:
        """``HTTP <status> <error>: <description>``, short, with ``secrets`` redacted."""
        text = " ".join(f"HTTP {self.status} {error}: {description}".split())[:300]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


class Issuer:
    """What each provider's issuer is given: the environment it reads (the SDKs'
    variables), the one HTTP client of the exchanges, a clock and a file reader (token
    files, configurations)."""

    def __init__(
        self,
        env: Mapping[str, str],
        http: CloudHTTP,
        *,
        clock: Callable[[], float] = time.time,
        read_file: Callable[[str], str] | None = None,
    ) -> None:
        self._env = env
        self._http = http
        self._clock = clock
        self._read = read_file or _read_text


def _read_text(path: str) -> str:
    return Path(path).read_text()


def ca_bundle(env: Mapping[str, str]) -> str | None:
    return env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None


class CloudHTTP:
    """Thread-safe; one instance for every provider."""

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        timeout: float = TIMEOUT,
        connect_to: ConnectTo | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # a CA bundle that cannot be read fails the cloud exchanges, not the exporter
        self._problem: str | None = None
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            self._problem = f"CA bundle {ca_file}: cannot be read ({type(exc).__name__})"
            context = ssl.create_default_context()
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=4)
        self._timeout = timeout
        self._client = httpx.Client(
            verify=context,
            timeout=httpx.Timeout(timeout),
            limits=limits,
            headers={"User-Agent": f"flux-oci-trigger/{__version__}"},
            follow_redirects=False,
            transport=transport or deadline_transport(context, limits, connect_to),
            trust_env=True,
        )

    def close(self) -> None:
        self._client.close()

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One exchange; a 5xx is ``CloudUnavailable``, any other status is the caller's.
        ``what`` names the call in messages (``AWS STS``, ``GCE metadata server``)."""
        if self._problem is not None:
            raise CloudAuthError(f"{what}: {self._problem}")
        try:
            request = self._client.build_request(
                method, url, headers=headers, content=content, data=data, params=params
            )
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise CloudAuthError(f"{what}: not a usable URL") from exc
        where = show_origin(origin(request.url))
        seconds = timeout or self._timeout
        try:
            with Deadline(seconds):
                response = self._client.send(request, stream=True)
                try:
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY:
                            raise CloudUnavailable(f"{what} ({where}): answer too large")
                finally:
                    response.close()
        except CloudUnavailable:
            raise
        except (httpx.HTTPError, OSError, UnicodeError) as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
            raise CloudUnavailable(f"{what} ({where}): {kind} ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise CloudUnavailable(f"{what} ({where}): HTTP {response.status_code}")
        return Reply(response.status_code, response.headers, bytes(body))
