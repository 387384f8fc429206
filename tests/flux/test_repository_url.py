"""``spec.url`` as Flux accepts it, and messages that never repeat a secret.

A URL reaches a log line, a Warning Event, the ``check`` table and the ``url`` label of
``flux_oci_target_info``; so credentials, a query (``?access_token=``) or a fragment must
never be quoted back, and what Flux refuses must be a ``config_error``, not a label value.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.flux.annotations import DEFAULT_PREFIX
from exporter.flux.helm_sources import helm_repository_info
from exporter.flux.sources import oci_repository_target
from exporter.flux.targets import SourceProblem, Target
from exporter.model import ErrorReason, RepositoryRef

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "registry", "path"),
    [
        ("oci://ghcr.io/stefanprodan/podinfo", "ghcr.io", "stefanprodan/podinfo"),
        ("ghcr.io/org/app", "ghcr.io", "org/app"),
        ("oci://localhost:5000/a", "localhost:5000", "a"),
        ("oci://127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app"),
        ("oci://[::1]:5000/team/app", "[::1]:5000", "team/app"),
        ("oci://Registry.GitLab.com/group/sub-group/my_app__x", "registry.gitlab.com",
         "group/sub-group/my_app__x"),
        ("oci://r.example/a-b--c/d.e/f_g", "r.example", "a-b--c/d.e/f_g"),
        ("oci://ghcr.io/org/charts/", "ghcr.io", "org/charts"),  # Flux allows it on HelmRepository
    ],
)  # fmt: skip
def test_urls_flux_accepts(url: str, registry: str, path: str) -> None:
    assert RepositoryRef.parse(url) == RepositoryRef(registry, path)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://ghcr.io/org/app", "unsupported URL scheme 'https'"),
        ("oci://ghcr.io", "expected oci://HOST[:PORT]/PATH"),
        ("oci:///org/app", "expected oci://HOST[:PORT]/PATH"),
        ("oci://ghcr.io/Org/App", "path 'Org/App' is not an OCI repository name"),
        ("oci://ghcr.io/org/../app", "path 'org/../app'"),
        ("oci://ghcr.io/org//app", "path 'org//app'"),
        ("oci://ghcr.io/org/app//", "path 'org/app/'"),
        ("oci://ghcr.io//org/app", "path '/org/app'"),
        ("oci://ghcr.io/org/app.", "path 'org/app.'"),
        ("oci://ghcr.io/-org/app", "path '-org/app'"),
        ("oci://ghcr.io/org/ap p", "path 'org/ap p'"),
        ("oci://ghcr.io/org/é", "path 'org/é'"),
        ("oci://ghcr.io/org/app:1.0", "no tag allowed"),
        ("oci://gh_cr.io/org/app", "host 'gh_cr.io' is not HOST[:PORT]"),
        ("oci://-ghcr.io/org/app", "host '-ghcr.io'"),
        ("oci://ghcr.io:99999/org/app", "host 'ghcr.io:99999'"),
        ("oci://ghcr.io:/org/app", "host 'ghcr.io:'"),
        ("oci://ghcr.io/org/app?access_token=abc", "a query or fragment"),
        ("oci://ghcr.io/org/app#frag", "a query or fragment"),
        ("oci://ghcr.io/org/app@sha256:" + "a" * 64, "'@' is not allowed"),
        ("oci://ghcr.io/org/app\n", "control characters"),
        ("oci://ghcr.io/org/\x1b[31mapp", "control characters"),
        ("oci://ghcr.io/org/app\x85", "control characters"),
        (" oci://ghcr.io/org/app", "unsupported URL scheme ' oci'"),
    ],
)
def test_urls_flux_refuses(url: str, needle: str) -> None:
    with pytest.raises(ValueError) as caught:
        RepositoryRef.parse(url)
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"oci://alice:{SECRET}@ghcr.io/org/app",
        f"oci://alice:{SECRET}@ghcr.io",  # no path: the message used to quote the URL
        f"oci://alice:{SECRET}/x@ghcr.io/org/app",  # a '/' in the password
        f"oci://alice:{SECRET}?x@ghcr.io/org/app",
        f"https://alice:{SECRET}@ghcr.io/org/app",
        f"{SECRET}@ghcr.io/org/app",
        f"oci://ghcr.io/org/app?access_token={SECRET}",
        f"oci://ghcr.io/org/app#{SECRET}",
        f"oci://ghcr.io/Org/app?access_token={SECRET}",
        f"oci://alice:{SECRET}@ghcr.io/org/app\n",
        f"{SECRET}?://ghcr.io/org/app",
    ],
)
def test_messages_never_repeat_credentials_or_query(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        RepositoryRef.parse(url)
    assert SECRET not in str(caught.value)
    assert "alice" not in str(caught.value)


@given(st.text(max_size=20), st.text(max_size=20))
def test_no_password_is_ever_quoted(prefix: str, suffix: str) -> None:
    url = f"oci://{prefix}:{SECRET}@{suffix}"
    with pytest.raises(ValueError) as caught:
        RepositoryRef.parse(url)
    assert SECRET not in str(caught.value)


@given(
    st.text(max_size=60) | st.from_regex(r"(oci://)?[a-z0-9.:\[\]-]{1,15}/[a-zA-Z0-9._/-]{0,20}")
)
def test_anything_parses_to_a_clean_reference_or_a_value_error(url: str) -> None:
    try:
        ref = RepositoryRef.parse(url)
    except ValueError:
        return
    text = str(ref)
    assert text.isascii() and text.isprintable() and not set("@?#\\ ") & set(text)
    assert RepositoryRef.parse(f"oci://{ref}") == ref


LIMITS: dict[str, Any] = {"min_interval": 10.0, "default_interval": 60.0}


def oci_repository(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {
            "name": "app",
            "namespace": "team",
            "annotations": {DEFAULT_PREFIX + "enabled": "true"},
        },
        "spec": {"url": url, "ref": {"semver": ">=1.0.0"}},
    }


@pytest.mark.parametrize(
    "url",
    [
        f"oci://alice:{SECRET}@ghcr.io/org/app",
        f"oci://alice:{SECRET}@ghcr.io",
        f"oci://ghcr.io/org/app?access_token={SECRET}",
        f"oci://ghcr.io/org/app#{SECRET}",
        "oci://ghcr.io/org/App",
        "oci://ghcr.io/org/../app",
        "oci://ghcr.io/org/app\x1b]8;;http://evil\x07",
    ],
)
def test_a_refused_url_is_a_config_error_without_the_secret(url: str) -> None:
    problem = oci_repository_target(oci_repository(url), DEFAULT_PREFIX, **LIMITS)
    assert isinstance(problem, SourceProblem) and problem.reason is ErrorReason.CONFIG
    assert [p for p in problem.problems if p.startswith("spec.url: ")]
    assert SECRET not in repr(problem) and "alice" not in repr(problem)
    assert "\x1b" not in " ".join(problem.problems)


def test_a_helm_repository_url_is_checked_the_same_way() -> None:
    repo = {
        "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": "team", "annotations": {}},
        "spec": {"type": "oci", "url": f"oci://bob:{SECRET}@ghcr.io/org/charts"},
    }
    info = helm_repository_info(repo, DEFAULT_PREFIX, **LIMITS)
    assert info is not None and info.repository is None
    assert info.problems and SECRET not in " ".join(info.problems)


def test_an_accepted_url_is_the_url_label() -> None:
    target = oci_repository_target(
        oci_repository("oci://ghcr.io/org/app"), DEFAULT_PREFIX, **LIMITS
    )
    assert isinstance(target, Target) and f"oci://{target.repository}" == "oci://ghcr.io/org/app"
