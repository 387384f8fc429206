"""The source annotation scripts/publish-manifests writes is public: never a credential."""

from __future__ import annotations

import pytest

from devenv.publish import without_userinfo


@pytest.mark.parametrize(
    ("remote", "source"),
    [
        ("https://gitlab-ci-token:glcbt-s3cret@gitlab.com/g/p.git", "https://gitlab.com/g/p.git"),
        ("https://user:p@ss@registry.example:8443/x/y", "https://registry.example:8443/x/y"),
        ("https://gitlab.com/g/p", "https://gitlab.com/g/p"),
        ("https://token@gitlab.com", "https://gitlab.com"),
        ("git@gitlab.com:g/p.git", "git@gitlab.com:g/p.git"),  # no scheme: no password either
    ],
)
def test_the_remote_loses_its_credentials(remote: str, source: str) -> None:
    assert without_userinfo(remote) == source
