"""SigV4 against the published vectors of AWS's ``aws-sig-v4-test-suite`` (credentials
AKIDEXAMPLE, us-east-1, service ``service``, 2015-08-30T12:36:00Z, host
example.amazonaws.com) and the IAM ListUsers example of AWS's signing documentation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.cloud.sigv4 import AwsKeys, canonical_query, canonical_uri, sign, uri_encode

KEYS = AwsKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
WHEN = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
HOST = "example.amazonaws.com"
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
FORM = ("Content-Type", "application/x-www-form-urlencoded")

# (name, method, path, query, headers, body, signed headers, signature)
SUITE = [
    ("get-vanilla", "GET", "/", [], [], b"", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-unreserved", "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", [], [], b"",
     "host;x-amz-date", "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
    ("get-slashes", "GET", "//example//", [], [], b"", "host;x-amz-date",
     "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"),
    ("get-vanilla-query-order-key-case", "GET", "/", [("Param2", "value2"), ("Param1", "value1")],
     [], b"", "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-vanilla-query-order-value", "GET", "/", [("Param1", "value2"), ("Param1", "value1")],
     [], b"", "host;x-amz-date",
     "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
    ("get-vanilla-utf8-query", "GET", "/", [("\u1234", "bar")], [], b"", "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
    ("get-header-value-order", "GET", "/", [],
     [("My-Header1", v) for v in ("value4", "value1", "value3", "value2")], b"",
     "host;my-header1;x-amz-date",
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
    ("get-header-key-duplicate", "GET", "/", [],
     [("My-Header1", v) for v in ("value2", "value2", "value1")], b"",
     "host;my-header1;x-amz-date",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
    ("get-header-value-trim", "GET", "/", [],
     [("My-Header1", " value1"), ("My-Header2", '"a   b   c"')], b"",
     "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("post-x-www-form-urlencoded", "POST", "/", [], [FORM], b"Param1=value1",
     "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "body", "signed", "signature"),
    [case[1:] for case in SUITE],
    ids=[case[0] for case in SUITE],
)
def test_suite_vectors(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    signed: str,
    signature: str,
) -> None:
    result = sign(
        method, HOST, path, query, headers, body,
        keys=KEYS, region="us-east-1", service="service", when=WHEN,
    )  # fmt: skip
    assert result.headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={signed}, Signature={signature}"
    )
    assert result.headers["X-Amz-Date"] == "20150830T123600Z"


def test_get_vanilla_intermediate_texts() -> None:
    result = sign("GET", HOST, "/", [], [], b"", keys=KEYS, region="us-east-1",
                  service="service", when=WHEN)  # fmt: skip
    assert result.canonical_request == (
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert result.string_to_sign == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    )


def test_session_token_is_signed_and_sent() -> None:
    token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
    keys = AwsKeys(KEYS.access_key_id, KEYS.secret_access_key, token)
    result = sign("GET", HOST, "/", [], [], b"", keys=keys, region="us-east-1",
                  service="service", when=WHEN)  # fmt: skip
    assert result.headers["X-Amz-Security-Token"] == token
    assert (
        "SignedHeaders=host;x-amz-date;x-amz-security-token," in (result.headers["Authorization"])
    )
    assert result.signature == "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"


def test_iam_list_users_documentation_example() -> None:
    result = sign(
        "GET", "iam.amazonaws.com", "/", [("Action", "ListUsers"), ("Version", "2010-05-08")],
        [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], b"",
        keys=KEYS, region="us-east-1", service="iam", when=WHEN,
    )  # fmt: skip
    assert result.signature == "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


def test_encoding_pieces() -> None:
    assert uri_encode("a b/c~") == "a%20b%2Fc~" and uri_encode("a/b", slash=False) == "a/b"
    assert canonical_uri("/example space/") == "/example%20space/"  # suite: get-space
    assert canonical_uri("/\u1234") == "/%E1%88%B4"  # suite: get-utf8
    assert canonical_uri("/a/./b/../c") == "/a/c" and canonical_uri("") == "/"
    assert canonical_query([("b", ""), ("a", "1=2")]) == "a=1%3D2&b="
