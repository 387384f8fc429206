"""What `tags` and `select` print when a registry (or an argument) holds hostile text.

A registry chooses its tag names: a lone surrogate (valid JSON, no UTF-8 encoding), ANSI
and OSC escape sequences, bidi overrides. The commands run as real processes against a
tiny registry on loopback that serves ``/v2/`` and ``/v2/<repo>/tags/list``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

HOSTILE = [
    "v1.0.0",
    "\ud800",  # a lone surrogate
    "\x1b[31mred\x1b[0m",  # ANSI colour
    "\x1b]0;pwned\x07",  # OSC: sets the terminal's title
    "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\u202eevil",  # right-to-left override
    "v1.1.0",
]
REPOS = {"team/hostile": HOSTILE, "team/plus": ["1.0.0+build.1"]}
DIGEST = "sha256:" + "0123456789abcdef" * 4


class _Registry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        repo, _, what = path.removeprefix("/v2/").rpartition("/")
        if path == "/v2/":
            self._reply(200, b"{}")
        elif what == "list" and repo.removesuffix("/tags") in REPOS:
            name = repo.removesuffix("/tags")
            # ensure_ascii: "\ud800" goes out as the JSON escape, as a registry could send it
            self._reply(200, json.dumps({"name": name, "tags": REPOS[name]}).encode())
        elif repo.endswith("/manifests") and repo.removesuffix("/manifests") in REPOS:
            self._reply(200, b"{}", {"Docker-Content-Digest": DIGEST})
        else:
            self._reply(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

    do_HEAD = do_GET

    def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The command as a user runs it; output kept as bytes, to see exactly what was written."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, timeout=60, check=False
    )


def assert_terminal_safe(out: bytes) -> None:
    text = out.decode("utf-8")  # strict: a lone surrogate could not have been written
    assert not [c for c in text if not c.isprintable() and c != "\n"], text


def test_tags_text_escapes_what_a_terminal_would_act_on(registry: str) -> None:
    out = run("tags", f"oci://{registry}/team/hostile", "--insecure")
    assert out.returncode == 0, out.stderr
    assert_terminal_safe(out.stdout)
    lines = out.stdout.decode().splitlines()
    assert lines == [
        "v1.0.0",
        "\\ud800",
        "\\x1b[31mred\\x1b[0m",
        "\\x1b]0;pwned\\x07",
        "\\x1b]8;;http://evil.example\\x1b\\link\\x1b]8;;\\x1b\\",
        "\\u202eevil",
        "v1.1.0",
    ]


def test_tags_json_stays_valid_json_with_every_tag_intact(registry: str) -> None:
    out = run("tags", f"oci://{registry}/team/hostile", "--insecure", "--output", "json")
    assert out.returncode == 0, out.stderr
    assert out.stdout.isascii()
    assert json.loads(out.stdout)["tags"] == HOSTILE


def test_tags_selects_among_hostile_tags(registry: str) -> None:
    out = run("tags", f"oci://{registry}/team/hostile", "--insecure", "--semver", ">=1.0.0")
    assert out.returncode == 0, out.stderr
    assert_terminal_safe(out.stdout)
    assert out.stdout.decode().splitlines()[-1] == f"selected: v1.1.0 {DIGEST}"


def test_a_selected_tag_that_is_no_oci_tag_is_a_protocol_error(registry: str) -> None:
    out = run("tags", f"oci://{registry}/team/plus", "--insecure", "--semver", ">=1.0.0")
    assert out.returncode == 3
    assert b"protocol" in out.stderr and b"not an OCI tag" in out.stderr


@pytest.mark.parametrize("tag", ["a/b", "\udcff", "\x1b[2J", "-rc"])
def test_tag_option_must_be_an_oci_tag(registry: str, tag: str) -> None:
    out = run("tags", f"oci://{registry}/team/hostile", "--insecure", "--tag", tag)
    assert out.returncode == 2
    assert b"is not an OCI tag" in out.stderr
    assert_terminal_safe(out.stderr)


@pytest.mark.parametrize(
    "url",
    [
        "oci://alice:s3cr3t@{registry}/team/hostile",
        "oci://{registry}/team/hostile?access_token=s3cr3t",
        "oci://{registry}/team/Hostile\x1b]0;s3cr3t\x07",
    ],
)
def test_a_refused_url_exits_2_without_echoing_secrets(registry: str, url: str) -> None:
    out = run("tags", url.format(registry=registry), "--insecure")
    assert out.returncode == 2
    assert b"s3cr3t" not in out.stdout + out.stderr
    assert_terminal_safe(out.stderr)


def test_select_ignores_hostile_arguments_and_escapes_messages() -> None:
    out = run("select", "--semver", ">=1.0.0", "\x1b[2J", "\udcff", "1.0.0", "\u202e2.0.0")
    assert (out.returncode, out.stdout) == (0, b"1.0.0\n")
    bad = run("select", "--semver", ">=1.0.0", "--semver-filter", "\x1b[2J(", "1.0.0")
    assert bad.returncode == 2
    assert_terminal_safe(bad.stderr)


def test_select_json_is_ascii() -> None:
    out = run("select", "--semver", "*", "--output", "json", "1.0.0", "\udcff")
    assert out.returncode == 0 and out.stdout.isascii()
    assert json.loads(out.stdout) == {"selected": "1.0.0", "matching": ["1.0.0"]}
