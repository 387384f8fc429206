"""WWW-Authenticate parsing: quoted commas, escapes, several challenges, junk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.registry.challenge import Challenge, format_challenge, parse_challenges


def test_registry_bearer_challenge_with_commas_in_quotes() -> None:
    header = (
        'Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",'
        'scope="repository:group/sub/app:pull,push",error="insufficient_scope"'
    )
    [bearer] = parse_challenges(header)
    assert bearer.scheme == "bearer"
    assert bearer.get("realm") == "https://gitlab.example.com/jwt/auth"
    assert bearer.get("scope") == "repository:group/sub/app:pull,push"
    assert bearer.get("error") == "insufficient_scope"


def test_several_challenges_case_and_whitespace() -> None:
    header = 'Basic realm="Registry Realm" , BEARER Realm = "https://a/t" ,service=svc'
    assert parse_challenges(header) == [
        Challenge("basic", {"realm": "Registry Realm"}),
        Challenge("bearer", {"realm": "https://a/t", "service": "svc"}),
    ]


def test_token68_and_bare_schemes() -> None:
    assert parse_challenges("Negotiate YWJj==, Basic") == [
        Challenge("negotiate", {}, "YWJj=="),
        Challenge("basic", {}),
    ]


def test_escapes_inside_quoted_strings() -> None:
    [c] = parse_challenges(r'Bearer realm="a\"b\\c",service="x"')
    assert c.get("realm") == 'a"b\\c'
    assert c.get("service") == "x"


@pytest.mark.parametrize("header", ["", ",,, ", '"', "=", 'Bearer realm="unterminated'])
def test_garbage_never_raises(header: str) -> None:
    parse_challenges(header)


def test_first_duplicate_parameter_wins() -> None:
    [c] = parse_challenges('Bearer realm="one",realm="two"')
    assert c.get("realm") == "one"


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Bearer", "Basic", "Custom"]),
            st.dictionaries(names, values, min_size=1, max_size=5),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_quoted_values_round_trip(challenges: list[tuple[str, dict[str, str]]]) -> None:
    header = ", ".join(format_challenge(scheme, params) for scheme, params in challenges)
    parsed = parse_challenges(header)
    assert [(c.scheme, c.params) for c in parsed] == [
        (scheme.lower(), params) for scheme, params in challenges
    ]
