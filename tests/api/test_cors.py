"""CORS: ``[cors] allowed_origin`` answers browser preflights, off while unset.

Source: /work/shared/spec/api-v2-extended.md §9 (oslo.middleware's CORS with Zaqar's
allow/expose header defaults). The store does not matter here: the server uses SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.server import TidingsServer, client_headers

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
ZAQAR_EXPOSED = "X-Auth-Token,X-Subject-Token,X-Service-Token,X-OpenStack-Request-ID"
REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
)


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    srv = TidingsServer(
        tmp_path_factory.mktemp("cors"),
        env={"TIDINGS_CORS__ALLOWED_ORIGIN": f'["{ALLOWED}"]'},
    )
    srv.start()
    yield srv
    srv.stop()


def preflight(
    srv: TidingsServer, path: str, origin: str, method: str, headers: str | None = None
) -> httpx.Response:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return httpx.options(srv.url + path, headers=sent)


def cors_headers(resp: httpx.Response) -> dict[str, str]:
    return {name: resp.headers[name] for name in CORS_HEADERS if name in resp.headers}


def test_preflight_from_an_allowed_origin(cors_server: TidingsServer) -> None:
    # No X-Project-ID or Client-ID: a preflight is answered before admission.
    resp = preflight(
        cors_server,
        "/v2/queues/q/messages",
        ALLOWED,
        "POST",
        "Client-ID, X-Project-ID, Content-Type, X-Auth-Token",
    )
    assert resp.status_code == 200
    assert resp.content == b""
    assert cors_headers(resp) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "POST",
        "access-control-allow-headers": "Client-ID,X-Project-ID,Content-Type,X-Auth-Token",
        "access-control-max-age": "3600",
    }
    assert resp.headers["vary"] == "Origin"
    assert REQUEST_ID.match(resp.headers["x-openstack-request-id"])


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        (OTHER, "GET", None),  # origin not listed
        (ALLOWED.replace("https", "http"), "GET", None),  # scheme is part of the origin
        (ALLOWED, "TRACE", None),  # not in allow_methods
        (ALLOWED, "OPTIONS", None),  # Zaqar's allow_methods leave it out
        (ALLOWED, "PUT", "Client-ID, X-Not-Allowed"),  # a header not in allow_headers
    ],
)
def test_preflight_refused_carries_no_cors_headers(
    cors_server: TidingsServer, origin: str, method: str, headers: str | None
) -> None:
    resp = preflight(cors_server, "/v2/queues/q", origin, method, headers)
    assert resp.status_code == 200
    assert cors_headers(resp) == {}
    assert REQUEST_ID.match(resp.headers["x-openstack-request-id"])


def test_preflight_on_any_path(cors_server: TidingsServer) -> None:
    for path in ("/", "/v2/", "/v2/nowhere", "/v2/health"):
        resp = preflight(cors_server, path, ALLOWED, "GET")
        assert resp.status_code == 200, path
        assert resp.headers["access-control-allow-origin"] == ALLOWED, path


def test_actual_requests_from_an_allowed_origin(cors_server: TidingsServer) -> None:
    url = cors_server.url + "/v2"
    headers = {**client_headers(), "Origin": ALLOWED}
    answers = [
        (httpx.put(url + "/queues/q", headers=headers), 201),
        (httpx.get(url + "/queues", headers=headers), 200),
        (httpx.get(url + "/queues/q/claims/0123456789abcdef01234567", headers=headers), 404),
        (httpx.get(url + "/nowhere", headers=headers), 404),
        (httpx.get(url + "/queues", headers={"Origin": ALLOWED}), 400),  # no Client-ID
        (httpx.post(url + "/queues", headers=headers), 405),
    ]
    for resp, status in answers:
        assert resp.status_code == status, resp.request.url
        assert cors_headers(resp) == {
            "access-control-allow-origin": ALLOWED,
            "access-control-allow-credentials": "true",
            "access-control-expose-headers": ZAQAR_EXPOSED,
        }, (resp.request.method, resp.request.url)
        assert "Origin" in resp.headers["vary"]


def test_actual_requests_from_other_origins_get_no_cors_headers(
    cors_server: TidingsServer,
) -> None:
    url = cors_server.url + "/v2/queues"
    other = httpx.get(url, headers={**client_headers(), "Origin": OTHER})
    assert other.status_code == 200
    assert cors_headers(other) == {}
    assert "Origin" in other.headers["vary"]  # the answer depends on it
    plain = httpx.get(url, headers=client_headers())
    assert plain.status_code == 200
    assert cors_headers(plain) == {}


def test_cors_is_off_by_default(server: TidingsServer) -> None:
    resp = preflight(server, "/v2/queues", ALLOWED, "GET", "Client-ID")
    assert cors_headers(resp) == {}
    actual = httpx.get(
        server.url + "/v2/queues", headers={**client_headers(), "Origin": ALLOWED}
    )
    assert actual.status_code == 200
    assert cors_headers(actual) == {}
    assert "vary" not in actual.headers
