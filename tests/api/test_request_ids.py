"""Request ids: ``x-openstack-request-id`` on every response; a client's own adopted.

Source: /work/shared/spec/api-v2-extended.md §9 (``req-<uuid4>`` on every response since
Zaqar 21.0.0) and oslo.middleware's form of an incoming id (``req-`` and a lower-case
UUID). The store does not matter here: the server uses SQLite, logging at ``info``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.server import TidingsServer, client_headers, wait_until

HEADER = "x-openstack-request-id"
FRESH = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    server = TidingsServer(
        tmp_path_factory.mktemp("request-ids"),
        env={"TIDINGS_SERVER__LOG_LEVEL": "info", "TIDINGS_SERVER__MAX_URL_LENGTH": "512"},
    )
    server.start()
    yield server
    server.stop()


def test_every_response_has_a_fresh_id(srv: TidingsServer) -> None:
    url = srv.url + "/v2"
    headers = client_headers()
    answers = [
        (httpx.get(srv.url + "/"), 300),
        (httpx.put(url + "/queues/q", headers=headers), 201),
        (httpx.get(url + "/queues", headers=headers), 200),
        (httpx.get(url + "/queues", params={"limit": "x"}, headers=headers), 400),
        (httpx.get(url + "/queues"), 400),  # no Client-ID
        (httpx.get(url + "/health", headers=headers), 404),  # admin_mode is off
        (httpx.get(url + "/queues/q/claims/0123456789abcdef01234567", headers=headers), 404),
        (httpx.get(url + "/nowhere", headers=headers), 404),
        (httpx.post(url + "/queues", headers=headers), 405),
        (httpx.get(url + "/queues", headers={**headers, "Accept": "text/plain"}), 406),
        # Refused by the connection's limits, before the application sees it.
        (httpx.get(url + "/queues/" + "q" * 600, headers=headers), 414),
    ]
    ids = set()
    for resp, status in answers:
        assert resp.status_code == status, (resp.request.url, resp.text)
        assert FRESH.match(resp.headers.get(HEADER, "")), resp.request.url
        ids.add(resp.headers[HEADER])
    assert len(ids) == len(answers)


def test_a_well_formed_client_id_is_adopted_and_logged(srv: TidingsServer) -> None:
    url = srv.url + "/v2"
    answers = (("/queues", 200), ("/queues/q/claims/0123456789abcdef01234567", 404), ("/nope", 404))
    for path, status in answers:
        offered = f"req-{uuid.uuid4()}"
        resp = httpx.get(url + path, headers={**client_headers(), HEADER: offered})
        assert resp.status_code == status
        assert resp.headers[HEADER] == offered
        wait_until(lambda offered=offered: offered in srv.log(), f"{offered} in the log")


@pytest.mark.parametrize(
    "offered",
    [
        "req-not-a-uuid",
        "9d3c1f0e-5b7a-4c2d-8e6f-0a1b2c3d4e5f",  # no prefix
        "req-9d3c1f0e-5b7a-4c2d-8e6f-0a1b2c3d4e5f".upper(),
        "req-9d3c1f0e-5b7a-4c2d-8e6f-0a1b2c3d4e5fx",
        "req-9d3c1f0e-5b7a-4c2d-8e6f-0a1b2c3d4e5f\tinjected",
        "req-9d3c1f0e5b7a4c2d8e6f0a1b2c3d4e5f",  # no dashes
        "req-" + "a" * 2000,
        "",
    ],
)
def test_a_malformed_client_id_is_replaced(srv: TidingsServer, offered: str) -> None:
    resp = httpx.get(srv.url + "/v2/queues", headers={**client_headers(), HEADER: offered})
    assert resp.status_code == 200
    assert resp.headers[HEADER] != offered
    assert FRESH.match(resp.headers[HEADER])
