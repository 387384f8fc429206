"""The events listener over real HTTP: each source's header scheme, refusals, caps."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.core.hooks import HookSource, Nudge
from exporter.web.listener import Listener
from tests.fixtures import hooks as fx
from tests.web.fakes import Sink

SECRETS = {
    HookSource.DISTRIBUTION: "Bearer dist-SECRET",
    HookSource.GITLAB: "gitlab-SECRET",
    HookSource.GITHUB: "github-SECRET",
}
DIST_TYPE = "application/vnd.docker.distribution.events.v2+json"


@pytest.fixture
def served() -> Iterator[tuple[str, Sink]]:
    sink = Sink()
    listener = Listener(("127.0.0.1", 0), SECRETS, sink.deliver, sink.count,
                        gitlab_host="registry.gitlab.com")  # fmt: skip
    listener.start()
    try:
        yield f"http://127.0.0.1:{listener.server_address[1]}", sink
    finally:
        listener.stop()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_distribution_with_its_authorization_header(served: tuple[str, Sink]) -> None:
    base, sink = served
    headers = {"Authorization": "Bearer dist-SECRET", "Content-Type": DIST_TYPE}
    assert post(f"{base}/hooks/distribution", body(fx.DISTRIBUTION_PUSH), headers)[0] == 202
    assert sink.delivered == [
        (HookSource.DISTRIBUTION, [Nudge("team/app", "registry.example:5000")])
    ]


def test_wrong_or_missing_secrets_get_a_bare_401(served: tuple[str, Sink]) -> None:
    base, sink = served
    for headers in ({"Authorization": "Bearer nope"}, {}):
        code, text = post(f"{base}/hooks/distribution", body(fx.DISTRIBUTION_PUSH),
                          {**headers, "Content-Type": DIST_TYPE})  # fmt: skip
        assert (code, text) == (401, "unauthorized\n")
    code, _ = post(f"{base}/hooks/gitlab", body(fx.GITLAB_JOB),
                   {"X-Gitlab-Token": "dist-SECRET", "X-Gitlab-Event": "Job Hook",
                    "Content-Type": "application/json"})  # fmt: skip
    assert code == 401
    assert sink.delivered == []
    assert sink.counted == [("distribution", "unauthorized")] * 2 + [("gitlab", "unauthorized")]


def test_gitlab_token_and_event_header(served: tuple[str, Sink]) -> None:
    base, sink = served
    code, _ = post(f"{base}/hooks/gitlab", body(fx.GITLAB_TAG_PUSH),
                   {"X-Gitlab-Token": "gitlab-SECRET", "X-Gitlab-Event": "Tag Push Hook",
                    "Content-Type": "application/json"})  # fmt: skip
    assert code == 202
    assert sink.delivered[0][1][0].expedite


def test_github_signature_over_the_body(served: tuple[str, Sink]) -> None:
    base, sink = served
    payload = body(fx.GITHUB_PACKAGE)
    signature = "sha256=" + hmac.new(b"github-SECRET", payload, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "package", "Content-Type": "application/json"}
    assert post(f"{base}/hooks/github", payload, {**headers,
                "X-Hub-Signature-256": signature})[0] == 202  # fmt: skip
    tampered = payload.replace(b"App", b"Evil")
    assert post(f"{base}/hooks/github", tampered, {**headers,
                "X-Hub-Signature-256": signature})[0] == 401  # fmt: skip
    assert sink.delivered == [(HookSource.GITHUB, [Nudge("octo-org/app", "ghcr.io")])]


def test_a_source_without_a_secret_is_off(served: tuple[str, Sink]) -> None:
    base, _ = served
    code, text = post(f"{base}/hooks/harbor", body(fx.HARBOR_PUSH),
                      {"Content-Type": "application/json"})  # fmt: skip
    assert code == 404 and "not enabled" in text
    assert post(f"{base}/hooks/nexus", b"{}", {})[0] == 404


def test_caps_and_content_types(served: tuple[str, Sink]) -> None:
    base, sink = served
    auth = {"Authorization": "Bearer dist-SECRET"}
    # announced too large: refused before a byte of the body is read
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=5)
    conn.putrequest("POST", "/hooks/distribution")
    for name, value in {**auth, "Content-Type": DIST_TYPE, "Content-Length": str(2 << 20)}.items():
        conn.putheader(name, value)
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert (
        post(
            f"{base}/hooks/distribution",
            b"x=1",
            {**auth, "Content-Type": "application/x-www-form-urlencoded"},
        )[0]
        == 415
    )
    assert post(f"{base}/hooks/distribution", b"{nope",
                {**auth, "Content-Type": DIST_TYPE})[0] == 400  # fmt: skip
    assert sink.delivered == []
    assert ("distribution", "invalid") in sink.counted


def test_an_event_of_no_interest_is_accepted_all_the_same(served: tuple[str, Sink]) -> None:
    base, sink = served
    pulled = {"events": [fx.DISTRIBUTION_PUSH["events"][2]]}
    headers = {"Authorization": "Bearer dist-SECRET", "Content-Type": DIST_TYPE}
    assert post(f"{base}/hooks/distribution", body(pulled), headers)[0] == 202
    assert sink.delivered == [(HookSource.DISTRIBUTION, [])]
