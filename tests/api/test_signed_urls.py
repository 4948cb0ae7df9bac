"""Pre-signed URLs: ``POST /v2/queues/{q}/share`` and requests made with its result.

Source: /work/shared/spec/api-v2-extended.md §3 and §11 item 8. Where Zaqar's path check
is a regular-expression search (look-alike queue names pass, ``(((`` gives a 500), the
literal match Tidings does is asserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from zaqarclient.queues import client as zaqar
from zaqarclient.queues.v2.client import Client

from tests.backends import StoreNamespace
from tests.server import TidingsServer
from tidings import signing

SECRET_KEY = "test-secret-key"
NOT_FOUND = {"title": "404 Not Found"}
INVALID_REQUEST = "Invalid API request"
INVALID_BODY = "Invalid request body"
NOT_INTEGER = (
    "`expires` should be date format, for example 2016-01-01T00:00:00, "
    "not integer value: 1451606400"
)


@pytest.fixture(scope="module")
def signing_server(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TidingsServer]:
    """One server with a secret key for the module (make_server would start one per test)."""
    data_dir = tmp_path_factory.mktemp(f"signing-{store_kind}")
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(
        data_dir, env={"TIDINGS_SIGNED_URL__SECRET_KEY": SECRET_KEY}, store_uri=namespace.uri
    )
    srv.start()
    yield srv
    srv.stop()
    namespace.drop()


@pytest.fixture
def api(signing_server: TidingsServer) -> Iterator[httpx.Client]:
    with signing_server.client() as client:
        yield client


def share(api: httpx.Client, queue: str, body: Any) -> dict[str, Any]:
    response = api.post(f"/queues/{queue}/share", json=body)
    assert response.status_code == 200, response.text
    shared: dict[str, Any] = response.json()
    return shared


def signed_headers(shared: dict[str, Any], **overrides: str) -> dict[str, str]:
    """What python-zaqarclient sends for a signed URL, plus a fresh Client-ID."""
    headers = {
        "Client-ID": str(uuid.uuid4()),
        "X-Project-ID": shared["project"],
        "URL-Signature": shared["signature"],
        "URL-Expires": shared["expires"],
        "URL-Methods": ",".join(shared["methods"]),
        "URL-Paths": ",".join(shared["paths"]),
    }
    headers.update(overrides)
    return headers


def signed_client(server: TidingsServer, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=headers, timeout=30.0)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND


# ---------------------------------------------------------------- share


def test_share_signs_what_was_asked(api: httpx.Client) -> None:
    body = {"methods": ["POST", "GET"], "paths": ["messages", "claims"],
            "expires": "2030-01-01T00:00:00"}
    shared = share(api, "uq1", body)
    project = api.headers["X-Project-ID"]
    paths = ["/v2/queues/uq1/claims", "/v2/queues/uq1/messages"]
    assert shared == {
        "paths": paths,
        "methods": ["GET", "POST"],
        "project": project,
        "expires": "2030-01-01T00:00:00",
        "signature": signing.sign(
            SECRET_KEY, paths, ["GET", "POST"], project, "2030-01-01T00:00:00"
        ),
    }
    assert list(shared) == ["paths", "methods", "project", "expires", "signature"]


def test_share_spec_example(signing_server: TidingsServer) -> None:
    with signing_server.client(project="specurl1") as api:
        shared = share(api, "uq1", {"methods": ["GET", "POST"], "paths": ["messages", "claims"],
                                    "expires": "2030-01-01T00:00:00"})
    assert shared["signature"] == (
        "80f1558c4864029858a15c01e30f9c36c273576c4ac4a9d70b323119ca8dd18d"
    )


def test_share_defaults(api: httpx.Client) -> None:
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    shared = share(api, "s.1", {})
    after = datetime.now(UTC).replace(tzinfo=None)
    assert shared["paths"] == ["/v2/queues/s.1/messages"]
    assert shared["methods"] == ["GET"]
    expires = datetime.strptime(shared["expires"], signing.EXPIRES_FORMAT)
    assert before + timedelta(days=1) <= expires <= after + timedelta(days=1)
    # Empty or null values take the defaults too, as in Zaqar.
    again = share(api, "s.1", {"methods": [], "paths": None, "expires": shared["expires"]})
    assert again == shared


@pytest.mark.parametrize(
    ("expires", "normalised"),
    [
        ("2030-01-01T00:00:00+02:00", "2029-12-31T22:00:00"),
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00"),
        ("2030-01-01T00:00:00.123456", "2030-01-01T00:00:00"),
        ("2030-01-01", "2030-01-01T00:00:00"),
    ],
)
def test_share_normalises_expires_to_naive_utc(
    api: httpx.Client, expires: str, normalised: str
) -> None:
    assert share(api, "q", {"expires": expires})["expires"] == normalised


@pytest.mark.parametrize(
    ("content", "title", "description"),
    [
        (None, INVALID_BODY, "Request body can not be empty"),
        (b"garbage", INVALID_BODY, "Request body could not be parsed."),
        (b"[]", INVALID_BODY, "Document type not supported."),
        (b'{"foo": 1}', INVALID_REQUEST, "Unknown keys: {'foo'}"),
        (b'{"foo": 1, "bar": 2}', INVALID_REQUEST, "Unknown keys: {'bar', 'foo'}"),
        (b'{"methods": "GET"}', INVALID_REQUEST, "`methods` should be a list"),
        (b'{"methods": {"a": 1}}', INVALID_REQUEST, "`methods` should be a list"),
        (b'{"methods": [1, "b"]}', INVALID_REQUEST, "`methods` should be a list of strings"),
        (b'{"paths": ["queues"]}', INVALID_REQUEST, "Invalid paths: {'queues'}"),
        (b'{"paths": ["messages", 1]}', INVALID_REQUEST, "Invalid paths: {1}"),
        (b'{"paths": "messages"}', INVALID_REQUEST, "`paths` should be a list"),
        (b'{"expires": 1451606400}', INVALID_REQUEST, NOT_INTEGER),
        (b'{"expires": "1451606400"}', INVALID_REQUEST, NOT_INTEGER),
        (b'{"expires": "garbage"}', INVALID_REQUEST, "Unable to parse date string 'garbage'"),
        (b'{"expires": ""}', INVALID_REQUEST, "Unable to parse date string ''"),
        (b'{"expires": [1]}', INVALID_REQUEST, "Unable to parse date string [1]"),
        (
            b'{"expires": "9999-12-31T23:59:59-01:00"}',
            INVALID_REQUEST,
            "Unable to parse date string '9999-12-31T23:59:59-01:00'",
        ),
        (
            b'{"expires": "2000-01-01T00:00:00"}',
            INVALID_REQUEST,
            "`expires` is lower than the current time",
        ),
        # Zaqar's order: unknown keys, paths, then methods and expires.
        (b'{"foo": 1, "methods": "x"}', INVALID_REQUEST, "Unknown keys: {'foo'}"),
        (b'{"paths": ["queues"], "expires": "x"}', INVALID_REQUEST, "Invalid paths: {'queues'}"),
    ],
)
def test_share_errors(
    api: httpx.Client, content: bytes | None, title: str, description: str
) -> None:
    response = api.post("/queues/q/share", content=content)
    assert response.status_code == 400
    assert response.json() == {"title": title, "description": description}


def test_share_checks_the_queue_name(api: httpx.Client) -> None:
    response = api.post(f"/queues/{'a' * 65}/share", json={})
    assert response.status_code == 400
    assert response.json()["title"] == "Invalid queue identification"


def test_without_a_secret_key(make_server: type[TidingsServer], tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.start()
    with server.client() as api:
        response = api.post("/queues/q/share", json={"paths": ["messages"]})
        assert response.status_code == 400
        assert response.json() == {
            "title": INVALID_REQUEST, "description": "The `key` can't be None"
        }
        # Body errors come first, as in Zaqar.
        assert api.post("/queues/q/share", json={"foo": 1}).json()["description"] == (
            "Unknown keys: {'foo'}"
        )
        project = str(api.headers["X-Project-ID"])
    # Even a signature made with some key is refused: the server has none to check with.
    paths, methods, expires = ["/v2/queues/q/messages"], ["GET"], "2030-01-01T00:00:00"
    shared = {"paths": paths, "methods": methods, "project": project, "expires": expires,
              "signature": signing.sign(SECRET_KEY, paths, methods, project, expires)}
    with signed_client(server, signed_headers(shared)) as client:
        assert_refused(client.get("/v2/queues/q/messages"))


# ---------------------------------------------------------------- using a signed URL


def test_post_list_and_get_with_a_signed_url(
    signing_server: TidingsServer, api: httpx.Client
) -> None:
    shared = share(api, "uq1", {"methods": ["GET", "POST"], "paths": ["messages"]})
    with signed_client(signing_server, signed_headers(shared)) as client:
        posted = client.post("/v2/queues/uq1/messages", json={"messages": [{"body": "hi"}]})
        assert posted.status_code == 201, posted.text
        href = posted.json()["resources"][0]
        listed = client.get("/v2/queues/uq1/messages", params={"echo": "true"})
        assert listed.status_code == 200
        assert [m["body"] for m in listed.json()["messages"]] == ["hi"]
        got = client.get(href)
        assert got.status_code == 200
        assert got.json()["body"] == "hi"
        # Not granted: the queue itself, its stats, deleting the message.
        assert_refused(client.delete("/v2/queues/uq1"))
        assert_refused(client.get("/v2/queues/uq1/stats"))
        assert_refused(client.delete(href))
        assert_refused(client.post("/v2/queues/uq1/claims", json={}))
        assert_refused(client.post("/v2/queues/uq1/share", json={}))
    # The messages are the sharing project's.
    assert [m["body"] for m in api.get("/queues/uq1/messages").json()["messages"]] == ["hi"]


def test_header_order_does_not_matter(signing_server: TidingsServer, api: httpx.Client) -> None:
    shared = share(api, "q", {"methods": ["GET", "POST"], "paths": ["messages", "claims"]})
    headers = signed_headers(
        shared,
        **{
            "URL-Methods": ",".join(reversed(shared["methods"])),
            "URL-Paths": ",".join(reversed(shared["paths"])),
        },
    )
    with signed_client(signing_server, headers) as client:
        assert client.get("/v2/queues/q/messages").status_code == 200
        assert client.post("/v2/queues/q/claims", json={}).status_code == 204


def test_a_signed_request_still_needs_a_client_id(
    signing_server: TidingsServer, api: httpx.Client
) -> None:
    shared = share(api, "q", {})
    headers = signed_headers(shared)
    del headers["Client-ID"]
    with signed_client(signing_server, headers) as client:
        response = client.get("/v2/queues/q/messages")
        assert response.status_code == 400
        assert response.json()["title"] == "Missing header value"


def test_signature_checked_before_other_headers(
    signing_server: TidingsServer, api: httpx.Client
) -> None:
    shared = share(api, "q", {})
    headers = signed_headers(shared, **{"URL-Signature": "0" * 64})
    del headers["Client-ID"]
    with signed_client(signing_server, headers) as client:
        assert_refused(client.get("/v2/queues/q/messages", headers={"Accept": "text/plain"}))


@pytest.mark.parametrize(
    ("overrides", "method", "path"),
    [
        ({"URL-Signature": "0" * 64}, "GET", "/v2/queues/q/messages"),
        ({"URL-Signature": ""}, "GET", "/v2/queues/q/messages"),
        ({}, "DELETE", "/v2/queues/q/messages"),  # method not granted
        ({"URL-Methods": "GET,POST,DELETE"}, "DELETE", "/v2/queues/q/messages"),
        ({}, "DELETE", "/v2/queues/q"),
        ({}, "GET", "/v2/queues/q/stats"),
        ({}, "GET", "/v2/queues/q/messagesX"),
        ({}, "GET", "/v2/queues"),
        ({}, "GET", "/v2/ping"),
        ({"URL-Paths": "((("}, "GET", "/v2/queues/q/messages"),
        ({"URL-Paths": ".*"}, "GET", "/v2/queues/q/messages"),
        ({"URL-Paths": "/v2/queues/q/messages,/v2/queues/q"}, "GET", "/v2/queues/q"),
        ({"URL-Expires": "2030-01-01T00:00:00Z"}, "GET", "/v2/queues/q/messages"),
        ({"URL-Expires": "1893456000"}, "GET", "/v2/queues/q/messages"),
        ({"X-Project-ID": "someone-else"}, "GET", "/v2/queues/q/messages"),
    ],
)
def test_refused(
    signing_server: TidingsServer,
    api: httpx.Client,
    overrides: dict[str, str],
    method: str,
    path: str,
) -> None:
    shared = share(api, "q", {"methods": ["GET", "POST"], "expires": "2030-01-01T00:00:00"})
    with signed_client(signing_server, signed_headers(shared, **overrides)) as client:
        assert_refused(client.request(method, path))


def test_look_alike_queue_is_refused(signing_server: TidingsServer, api: httpx.Client) -> None:
    # Zaqar searches "/v2/queues/s.1/messages" as a pattern, which matches sX1's.
    shared = share(api, "s.1", {"methods": ["GET", "POST"]})
    with signed_client(signing_server, signed_headers(shared)) as client:
        assert client.get("/v2/queues/s.1/messages").status_code == 200
        assert_refused(client.get("/v2/queues/sX1/messages"))
        assert_refused(client.post("/v2/queues/sX1/messages", json={"messages": [{"body": 1}]}))


def test_expired_url_is_refused(signing_server: TidingsServer, api: httpx.Client) -> None:
    project = str(api.headers["X-Project-ID"])
    paths, methods, expires = ["/v2/queues/q/messages"], ["GET"], "2020-01-01T00:00:00"
    shared: dict[str, Any] = {
        "paths": paths, "methods": methods, "project": project, "expires": expires,
        "signature": signing.sign(SECRET_KEY, paths, methods, project, expires),
    }
    with signed_client(signing_server, signed_headers(shared)) as client:
        assert_refused(client.get("/v2/queues/q/messages"))
    # The same grant, still valid, passes: only the expiry was wrong.
    shared["expires"] = "2030-01-01T00:00:00"
    shared["signature"] = signing.sign(SECRET_KEY, paths, methods, project, shared["expires"])
    with signed_client(signing_server, signed_headers(shared)) as client:
        assert client.get("/v2/queues/q/messages").status_code == 200


def test_another_projects_signature_is_refused(
    signing_server: TidingsServer, api: httpx.Client
) -> None:
    shared = share(api, "q", {})
    with signing_server.client() as other:
        theirs = share(other, "q", {})
    headers = signed_headers(shared, **{"URL-Signature": theirs["signature"]})
    with signed_client(signing_server, headers) as client:
        assert_refused(client.get("/v2/queues/q/messages"))


# ---------------------------------------------------------------- python-zaqarclient


def test_zaqarclient_signed_url_end_to_end(signing_server: TidingsServer) -> None:
    project = f"zc-{uuid.uuid4().hex[:12]}"
    owner: Client = zaqar.Client(
        signing_server.url,
        version=2,
        conf={"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}},
    )
    owner.queue("shared", force_create=True)
    data = owner.queue("shared", auto_create=False).signed_url(
        paths=["messages"], methods=["GET", "POST"], ttl_seconds=3600
    )
    assert data["paths"] == ["/v2/queues/shared/messages"]
    assert data["project"] == project

    options = {key: data[key] for key in ("expires", "methods", "paths", "signature")}
    guest: Client = zaqar.Client(
        signing_server.url,
        version=2,
        conf={"auth_opts": {"backend": "signed-url",
                            "options": {**options, "os_project_id": project}}},
    )
    queue = guest.queue("shared", auto_create=False)
    queue.post([{"body": {"n": 1}, "ttl": 300}, {"body": {"n": 2}, "ttl": 300}])
    assert [m.body for m in queue.messages(echo=True)] == [{"n": 1}, {"n": 2}]
    # The owner sees what the guest posted.
    assert [m.body for m in owner.queue("shared", auto_create=False).messages()] == [
        {"n": 1}, {"n": 2}
    ]
