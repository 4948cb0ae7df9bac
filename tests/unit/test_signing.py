"""Signatures byte-compatible with Zaqar's, and the rules for signed requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tidings import signing

SPEC_PATHS = ["/v2/queues/uq1/messages", "/v2/queues/uq1/claims"]
SPEC_SIGNATURE = "80f1558c4864029858a15c01e30f9c36c273576c4ac4a9d70b323119ca8dd18d"

# Captured from a real Zaqar 23.0.1 (secret_key "test", X-Project-ID "p").
ZAQAR_VECTORS = [
    (
        ["/v2/queues/uq1/messages"],
        ["GET"],
        "p",
        "2030-01-01T00:00:00",
        "e04ffce59c80d4b153caacb2066d7b66b647562f7cdfb8452ae0a8cc81de83ab",
    ),
    (
        ["/v2/queues/s.1/subscriptions", "/v2/queues/s.1/messages", "/v2/queues/s.1/claims"],
        ["POST", "GET", "DELETE"],
        "p",
        "2031-06-15T12:34:56",
        "aebfebb54a8a04b2b35befc4619ab325e808d5b6279c6b2950d18f9b12d00632",
    ),
    (
        ["/v2/queues/s.1/subscriptions", "/v2/queues/s.1/messages", "/v2/queues/s.1/claims"],
        ["POST", "GET", "DELETE"],
        "None",
        "2031-06-15T12:34:56",
        "ed5a09c214833e90b7307f45342916c106c56ded53a25b3b7379775e2280338d",
    ),
    (  # non-ASCII method: the string to sign is UTF-8
        ["/v2/queues/uq1/messages"],
        ["ü", "GET"],
        "p",
        "2030-01-01T00:00:00",
        "10d5d1e5ae0430e8cf2ee0a34f2994412ef6fcae424d5603ef2997f7f6eff352",
    ),
]

NOW = datetime(2026, 1, 1)


def test_spec_example_vector() -> None:
    signature = signing.sign(
        "test-secret-key", SPEC_PATHS, ["POST", "GET"], "specurl1", "2030-01-01T00:00:00"
    )
    assert signature == SPEC_SIGNATURE


def test_separator_is_backslash_n_not_newline() -> None:
    assert signing.SEPARATOR == "\\n"
    assert len(signing.SEPARATOR) == 2


@pytest.mark.parametrize(("paths", "methods", "project", "expires", "expected"), ZAQAR_VECTORS)
def test_matches_zaqar(
    paths: list[str], methods: list[str], project: str, expires: str, expected: str
) -> None:
    assert signing.sign("test", paths, methods, project, expires) == expected


def test_create_sorts_and_formats() -> None:
    expires = datetime(2030, 1, 1, 0, 0, 0, 999)
    url = signing.create("test-secret-key", SPEC_PATHS, ["POST", "GET"], "specurl1", expires)
    assert url == signing.SignedUrl(
        paths=["/v2/queues/uq1/claims", "/v2/queues/uq1/messages"],
        methods=["GET", "POST"],
        project="specurl1",
        expires="2030-01-01T00:00:00",
        signature=SPEC_SIGNATURE,
    )


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("2030-01-01T00:00:00", datetime(2030, 1, 1)),
        ("2030-1-1T0:0:0", None),
        ("2030-01-01T00:00:00Z", None),
        ("2030-01-01T00:00:00.5", None),
        ("2030-01-01", None),
        ("1893456000", None),
        ("", None),
    ],
)
def test_parse_expires_takes_only_the_signed_form(raw: str, parsed: datetime | None) -> None:
    assert signing.parse_expires(raw) == parsed


@pytest.mark.parametrize(
    ("path", "granted"),
    [
        ("/v2/queues/q/messages", True),
        ("/v2/queues/q/messages/", True),  # routes to the collection
        ("/v2/queues/q/messages/0123abcd", True),
        ("/v2/queues/q/messages/a/b", False),
        ("/v2/queues/q/messagesX", False),
        ("/v2/queues/qXmessages", False),
        ("/v2/queues/q", False),
        ("/v2/queues/q/stats", False),
        ("/x/v2/queues/q/messages", False),
        ("/v2/queues/q/claims", True),
    ],
)
def test_path_granted_literally(path: str, granted: bool) -> None:
    assert signing.path_granted(path, ["/v2/queues/q/claims", "/v2/queues/q/messages"]) is granted


def test_dots_and_brackets_are_not_patterns() -> None:
    assert signing.path_granted("/v2/queues/s.1/messages", ["/v2/queues/s.1/messages"])
    assert not signing.path_granted("/v2/queues/sX1/messages", ["/v2/queues/s.1/messages"])
    assert not signing.path_granted("/v2/queues/q/messages", ["((("])
    assert not signing.path_granted("/v2/queues/q/messages", ["", ".*"])


def _headers(**overrides: Any) -> dict[str, Any]:
    paths = ["/v2/queues/q/messages", "/v2/queues/q/claims"]
    methods = ["POST", "GET"]
    expires = "2030-01-01T00:00:00"
    values: dict[str, Any] = {
        "method": "GET",
        "path": "/v2/queues/q/messages",
        "project": "proj",
        "signature": signing.sign("k", paths, methods, "proj", expires),
        "expires": expires,
        # The header order differs from the signed order: verification re-sorts.
        "methods": ",".join(methods),
        "paths": ",".join(paths),
        "now": NOW,
    }
    values.update(overrides)
    return values


def test_verify_accepts_a_valid_signed_request() -> None:
    assert signing.verify_headers("k", **_headers())
    assert signing.verify_headers("k", **_headers(method="POST", path="/v2/queues/q/claims"))
    assert signing.verify_headers("k", **_headers(path="/v2/queues/q/messages/some-id"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"signature": "0" * 64},
        {"signature": "ü"},
        {"method": "DELETE"},
        {"method": "get"},
        {"path": "/v2/queues/q"},
        {"path": "/v2/queues/q/stats"},
        {"project": "other"},
        {"project": None},
        {"expires": None},
        {"expires": "2030-01-01T00:00:00Z"},
        {"expires": "1893456000"},
        {"now": datetime(2030, 1, 1)},  # expired exactly now
        {"methods": None},
        {"paths": None},
        {"paths": "((("},
    ],
)
def test_verify_refuses(overrides: dict[str, Any]) -> None:
    assert not signing.verify_headers("k", **_headers(**overrides))


def test_verify_refuses_without_a_key_or_with_another_key() -> None:
    assert not signing.verify_headers(None, **_headers())
    assert not signing.verify_headers("other-key", **_headers())


def test_verify_accepts_a_url_signed_by_zaqar() -> None:
    paths, methods, project, expires, signature = ZAQAR_VECTORS[1]
    assert signing.verify_headers(
        "test",
        method="DELETE",
        path="/v2/queues/s.1/claims/abc",
        project=project,
        signature=signature,
        expires=expires,
        methods=",".join(methods),
        paths=",".join(paths),
        now=NOW,
    )
