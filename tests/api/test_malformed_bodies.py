"""Every route that takes a body refuses every malformed body with a 4xx (issue 8).

The routes come from the Falcon app's router (every POST, PUT and PATCH responder), so
a new route is covered without editing this file. Each is crossed with malformed
bodies and with a Content-Length that disagrees with the body. The answer must be a
4xx in Zaqar's ``{"title", "description"}`` format: never a 5xx, never a hang.

One SQLite server serves the module (this is about parsing, not storage), and the
well-framed requests share one keep-alive connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.routes import pooling_route
from tests.routes import responders as _responders
from tests.server import TidingsServer, read_until_closed
from tidings.admission.actions import Action

BODY_METHODS = ("POST", "PUT", "PATCH")
JSON = "application/json"
PROJECT = f"malformed-{uuid.uuid4().hex[:8]}"
CLIENT_ID = str(uuid.uuid4())
QUEUE = "fuzz"
# Each request is answered well within this; past it the server counts as hung.
ANSWER_TIMEOUT = 15.0
# The server gives up on a body that does not arrive after this long ([server]).
BODY_TIMEOUT = 1.0

MALFORMED: dict[str, bytes] = {
    "invalid-utf8-value": b'{"ttl": "\xff\xfe", "messages": [{"body": "\xc3\x28"}]}',
    "invalid-utf8-key": b'{"\xff\xfe": 1, "messages": []}',
    "utf8-encoded-surrogate": b'{"subscriber": "\xed\xa0\x80", "confirmed": true}',
    "whitespace-only": b" \t\r\n ",
    "truncated": b'{"messages": [{"body": {"a": ',
    "nul-bytes": b'{"ttl": 60\x00, "grace": 60}',
    "nul-only": b"\x00\x00\x00",
    "nested-10000-deep": b"[" * 10_000 + b"]" * 10_000,
    "nested-10000-deep-value": b'{"messages": [{"body": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]}",
    "number-400-digits": b'{"ttl": ' + b"9" * 400 + b', "messages": [{"body": 1}]}',
    "top-level-string": b'"messages"',
    "top-level-number": b"60",
    "top-level-null": b"null",
}
# Sent with a Content-Length that does not match them.
LYING_BODY = b'{"ttl": 60, "grace": 60}'
LENGTH_LIES = ("length-longer-than-body", "length-shorter-than-body")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    content_type: str

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def _body_routes(*, pooling: bool = False) -> list[Route]:
    """Every responder for a body method, with the Content-Type it accepts: those of a
    server without pooling, or (``pooling``) the pool and flavor routes, which
    tests/pooling/test_admin_api.py runs these cases on against a pooled server."""
    routes = [
        Route(method, template, getattr(resource, "media_types", {}).get(method, JSON))
        for method, template, resource in _responders()
        if method in BODY_METHODS and pooling_route(template) == pooling
    ]
    return sorted(routes, key=lambda r: r.name)


ROUTES = _body_routes()


def test_the_router_offers_the_body_routes_we_know() -> None:
    """A sanity check on the walk: the well-known body routes are among those found."""
    found = {r.name for r in ROUTES}
    for expected in (
        "PUT /v2/queues/{queue}",
        "PATCH /v2/queues/{queue}",
        "POST /v2/queues/{queue}/messages",
        "POST /v2/queues/{queue}/claims",
        "PATCH /v2/queues/{queue}/claims/{claim_id}",
        "POST /v2/queues/{queue}/purge",
        "POST /v2/queues/{queue}/share",
        "POST /v2/topics/{queue}/subscriptions",
        "PATCH /v2/topics/{queue}/subscriptions/{subscription_id}",
        "PUT /v2/topics/{queue}/subscriptions/{subscription_id}/confirm",
    ):
        assert expected in found


def test_every_responder_names_its_action() -> None:
    """Admission judges a request by its action: a responder without one would fail."""
    for method, template, resource in _responders():
        if getattr(resource, "needs_caller", True):
            assert isinstance(resource.actions.get(method), Action), f"{method} {template}"


class Server:
    """The module's server, its existing resources and a reused connection."""

    def __init__(self, srv: TidingsServer) -> None:
        self.srv = srv
        self.fields: dict[str, str] = {"queue": QUEUE}
        self._conn: http.client.HTTPConnection | None = None

    def path(self, template: str) -> str:
        # Fields a future route adds get an id that names nothing, which is fine here.
        values = {**self.fields}
        while True:
            try:
                return template.format(**values)
            except KeyError as exc:
                values[str(exc.args[0])] = str(uuid.uuid4())

    def headers(self, route: Route) -> dict[str, str]:
        return {
            "Client-ID": CLIENT_ID,
            "X-Project-ID": PROJECT,
            "Content-Type": route.content_type,
            "Accept": "application/json",
        }

    def send(self, route: Route, body: bytes) -> tuple[int, bytes]:
        """One well-framed request on the shared connection (reopened if the server closed it)."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.srv.port, timeout=ANSWER_TIMEOUT
                )
            try:
                path = self.path(route.template)
                self._conn.request(route.method, path, body, self.headers(route))
                answer = self._conn.getresponse()
                data = answer.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # an idle keep-alive closed under us: once more, afresh
                if attempt == 2:
                    raise
                continue
            if answer.will_close:
                self.close()
            return answer.status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def lie(self, route: Route, declared: int) -> list[tuple[int, bytes]]:
        """Send LYING_BODY under a false Content-Length; every answer until the server closes."""
        head = [f"{route.method} {self.path(route.template)} HTTP/1.1", "Host: 127.0.0.1"]
        head += [f"{k}: {v}" for k, v in self.headers(route).items()]
        head.append(f"Content-Length: {declared}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + LYING_BODY
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=ANSWER_TIMEOUT) as s:
            s.sendall(request)
            return _split_responses(read_until_closed(s, ANSWER_TIMEOUT))


def _split_responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP/1.1 response in ``data`` (all with Content-Length)."""
    answers = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"truncated response head: {data[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(":", 1) for line in lines[1:])
        length = int({k.strip().lower(): v for k, v in fields.items()}["content-length"])
        answers.append((status, rest[:length]))
        data = rest[length:]
    return answers


@pytest.fixture(scope="module")
def body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = TidingsServer(
        tmp_path_factory.mktemp("malformed"),
        env={"TIDINGS_ADMIN_MODE": "true", "TIDINGS_SERVER__BODY_TIMEOUT": str(BODY_TIMEOUT)},
    )
    srv.start()
    try:
        with srv.client(project=PROJECT, client_id=CLIENT_ID) as api:
            # Real resources behind every id in a route, so nothing is refused for want
            # of one before its body is read.
            subscription = {"subscriber": "http://fake:8080/hook", "ttl": 3600}
            fields: dict[str, str] = {"queue": QUEUE}
            for collection in ("queues", "topics"):
                assert api.put(f"/{collection}/{QUEUE}", json={}).status_code == 201
                posted = api.post(
                    f"/{collection}/{QUEUE}/messages", json={"messages": [{"body": 1}] * 3}
                )
                assert posted.status_code == 201
                fields["message_id"] = posted.json()["resources"][0].rsplit("/", 1)[1]
                created = api.post(f"/{collection}/{QUEUE}/subscriptions", json=subscription)
                assert created.status_code == 201
            # Ids are checked against their own collection's resources; one of each
            # kind suffices for parsing, the rest answer 404 after the body.
            fields["subscription_id"] = created.json()["subscription_id"]
            claim = api.post(f"/queues/{QUEUE}/claims", json={"ttl": 300, "grace": 60})
            assert claim.status_code == 201
            fields["claim_id"] = claim.headers["location"].rsplit("/", 1)[1]
        target = Server(srv)
        target.fields = fields
        yield target
        target.close()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def late_answers(body_server: Server) -> dict[str, list[tuple[int, bytes]]]:
    """Every route's answers to a body shorter than its Content-Length.

    The server can only tell once ``[server] body_timeout`` passes, so these requests
    are sent together and waited on once, not one body timeout per route.
    """
    declared = len(LYING_BODY) + 64
    with ThreadPoolExecutor(max_workers=len(ROUTES)) as pool:
        futures = {r.name: pool.submit(body_server.lie, r, declared) for r in ROUTES}
        return {name: future.result() for name, future in futures.items()}


def assert_refused(status: int, body: bytes, what: str) -> None:
    assert 400 <= status < 500, f"{what}: {status} {body[:300]!r}"
    document: Any = json.loads(body)
    assert isinstance(document, dict), f"{what}: {body[:300]!r}"
    assert set(document) == {"title", "description"}, f"{what}: {document}"
    assert all(isinstance(v, str) and v for v in document.values()), f"{what}: {document}"


@pytest.mark.parametrize("case", [*MALFORMED, *LENGTH_LIES])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_malformed_body_is_refused_with_a_4xx(
    route: Route, case: str, body_server: Server, request: pytest.FixtureRequest
) -> None:
    what = f"{route.name} with {case}"
    if case == "length-longer-than-body":
        answers = request.getfixturevalue("late_answers")[route.name]
    elif case == "length-shorter-than-body":
        # The body's first bytes are the request; the rest is not HTTP at all.
        answers = body_server.lie(route, 5)
    else:
        answers = [body_server.send(route, MALFORMED[case])]
    assert answers, f"{what}: the server closed without answering"
    for status, body in answers:
        assert_refused(status, body, what)
