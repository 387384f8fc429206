"""Free loopback ports and waiting for a server to answer."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no listener on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


def wait_for_http(
    url: str,
    timeout: float = 30.0,
    ok_codes: tuple[int, ...] = (200, 401),
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until it answers with one of ``ok_codes`` (``context`` for HTTPS)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context) as resp:
                if resp.status in ok_codes:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in ok_codes:
                return
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s: {last}")
