"""Docker config parsing and kubelet-style key matching."""

from __future__ import annotations

import base64
import json

import pytest

from exporter.model import Credentials
from exporter.registry.dockerconfig import DockerConfig, DockerConfigError, merge, parse


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def config(auths: dict[str, dict[str, str]]) -> DockerConfig:
    return parse(json.dumps({"auths": auths}).encode())


def user(name: str) -> dict[str, str]:
    return {"auth": b64(f"{name}:pw-{name}")}


def who(cfg: DockerConfig, registry: str, path: str) -> str | None:
    creds = cfg.lookup(registry, path)
    return None if creds is None else creds.username


def test_entry_forms() -> None:
    cfg = config(
        {
            "a.example": {"auth": b64("u1:p:with:colons")},
            "b.example": {"username": "u2", "password": "p2"},
            "c.example": {"identitytoken": "refresh", "auth": b64("<token>:")},
            "d.example": {"registrytoken": "bearer"},
            "e.example": {"email": "only@example.com"},
        }
    )
    assert cfg.lookup("a.example", "x") == Credentials("u1", "p:with:colons")
    assert cfg.lookup("b.example", "x") == Credentials("u2", "p2")
    c = cfg.lookup("c.example", "x")
    assert c is not None and c.kind == "identitytoken" and c.identity_token == "refresh"
    d = cfg.lookup("d.example", "x")
    assert d is not None and d.kind == "registrytoken"
    assert cfg.lookup("e.example", "x") is None  # no usable credentials: not an entry


def test_legacy_dockercfg() -> None:
    cfg = parse(json.dumps({"https://reg.example/v1/": user("old")}))
    assert who(cfg, "reg.example", "team/app") == "old"


@pytest.mark.parametrize(
    ("registry", "path", "expected"),
    [
        ("reg.example", "team/app/web", "app"),  # longest path prefix wins
        ("reg.example", "team/other", "team"),
        ("reg.example", "solo", "host"),
        ("reg.example:5000", "team/app", "port"),  # the port must be equal
        ("eu.reg.example", "x", "glob"),  # one label per '*'
        ("a.eu.reg.example", "x", None),  # '*' never spans two labels
        ("mirror.internal", "x", "glob-tld"),
        ("REG.example", "team/app", "app"),  # hosts are case-insensitive
        ("reg.example", "team/apple", "app"),  # kubelet: a plain string prefix
    ],
)
def test_kubelet_matching(registry: str, path: str, expected: str | None) -> None:
    cfg = config(
        {
            "https://reg.example": user("host"),
            "reg.example/team": user("team"),
            "reg.example/team/app": user("app"),
            "reg.example:5000": user("port"),
            "*.reg.example": user("glob"),
            "mirror.*": user("glob-tld"),
        }
    )
    assert who(cfg, registry, path) == expected


def test_literal_host_beats_glob() -> None:
    cfg = config({"*.example.com": user("glob"), "eu.example.com": user("literal")})
    assert who(cfg, "eu.example.com", "x") == "literal"


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_aliases(registry: str) -> None:
    cfg = config({"https://index.docker.io/v1/": user("hub"), "ghcr.io": user("gh")})
    assert who(cfg, registry, "library/nginx") == "hub"
    assert who(cfg, "quay.io", "x") is None


def test_merge_keeps_the_first_config_for_equal_keys() -> None:
    secret_ref = config({"reg.example": user("secret-ref")})
    service_account = config({"reg.example": user("sa"), "other.example": user("sa-other")})
    merged = merge([secret_ref, service_account])
    assert who(merged, "reg.example", "x") == "secret-ref"
    assert who(merged, "other.example", "x") == "sa-other"
    assert len(merged) == 3


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"auths": []}',
        b'{"auths": {"reg.example": "SECRET-str"}}',
        json.dumps({"auths": {"reg.example": {"auth": "SECRET-not-base64!"}}}).encode(),
        json.dumps({"auths": {"reg.example": {"auth": b64("SECRET-no-colon")}}}).encode(),
        json.dumps({"auths": {"reg.example": {"password": 12345}}}).encode(),
        b"\xff\xfe",
    ],
)
def test_malformed_configs_never_echo_secrets(raw: bytes) -> None:
    with pytest.raises(DockerConfigError) as info:
        parse(raw)
    assert "SECRET" not in str(info.value)
    assert "12345" not in str(info.value)
    # no chained exception carries the raw value along into a traceback
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
