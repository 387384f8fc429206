"""A Docker token server on loopback, so token auth is tested against a real registry.

Implements what the distribution token spec asks of a realm: ``GET /token`` with
``service`` and ``scope`` (Basic credentials optional) and the OAuth2 refresh-token grant
(``POST /token``). Tokens are ES256 JWTs carrying both an ``x5c`` chain and a
libtrust-style ``kid`` for a self-signed certificate the registry trusts through
``auth.token.rootcertbundle`` (distribution 2.8 and v3 accept either). Requests are
counted so tests can assert that tokens are cached; ``reject`` makes every request fail
with 401 to exercise the client's auth breaker.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GRANTABLE = frozenset({"pull", "push", "delete"})


def libtrust_kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """libtrust's key ID: base32 of the first 240 bits of SHA-256(DER SPKI), 4-char groups."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


class TokenServer:
    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str],
        service: str = "fot-registry",
        issuer: str = "fot-token-server",
        anonymous_pull: bool = False,
        refresh_tokens: Mapping[str, str] | None = None,
        expires_in: int = 300,
    ) -> None:
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.anonymous_pull = anonymous_pull
        self.refresh_tokens = dict(refresh_tokens or {})  # refresh token -> user name
        self.expires_in = expires_in
        self.reject = False  # when True, every token request gets 401
        self.counts: Counter[str] = Counter()  # "get", "post", "refused"
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = workdir / "token-root.crt"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._headers = {
            "kid": libtrust_kid(self._key.public_key()),
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> int:
        with self._lock:
            return self.counts["get"] + self.counts["post"]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def mint(self, subject: str, scopes: Iterable[str]) -> str:
        """A signed token granting ``scopes`` (``repository:NAME:ACTIONS``) as-is; not counted."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 10,
            "exp": now + self.expires_in,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers=self._headers)

    def grant(self, user: str | None, scopes: Iterable[str]) -> dict[str, object]:
        """The token response for ``user`` (None: anonymous) asking for ``scopes``."""
        granted = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            wanted = set(parts[-1].split(","))
            allowed = GRANTABLE if user else ({"pull"} if self.anonymous_pull else set())
            actions = sorted(wanted & allowed)
            if actions:
                granted.append(f"repository:{':'.join(parts[1:-1])}:{','.join(actions)}")
        token = self.mint(user or "", granted)
        issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued,
        }

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: tests read counts, not logs

        def _answer(self, status: int, doc: Mapping[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self) -> None:
            server.count("refused")
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "refused"}]})

        def do_GET(self) -> None:
            server.count("get")
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path != "/token" or server.reject:
                return self._refuse()
            user: str | None = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                raw = base64.b64decode(header[6:]).decode(errors="replace")
                name, _, password = raw.partition(":")
                if name in server.users and secrets.compare_digest(server.users[name], password):
                    user = name
                elif server.refresh_tokens.get(password) is not None:
                    user = server.refresh_tokens[password]
                else:
                    return self._refuse()
            self._answer(200, server.grant(user, query.get("scope", [])))

        def do_POST(self) -> None:
            server.count("post")
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if server.reject or form.get("grant_type") != ["refresh_token"]:
                return self._refuse()
            user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
            if user is None:
                return self._refuse()
            scopes = " ".join(form.get("scope", [])).split()
            self._answer(200, server.grant(user, scopes))

    return Handler
