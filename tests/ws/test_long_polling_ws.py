"""Long polling over WebSocket (``"wait": N`` in ``claim_create`` and ``message_list``
bodies), against real servers on every store.

A frame that waits is answered apart from the connection's other frames, which go on
being answered meanwhile; its answer echoes its request, so a client can tell which it
is. Closing the connection ends its waits. As in tests/api/test_long_polling.py, a test
knows a frame is waiting from the server's debug log line for its queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.api.test_long_polling import LONG, Log, name, start
from tests.server import TidingsServer
from tidings.ws.session import MAX_WAITING_FRAMES

FRAME_BOUND = LONG + 10.0


@pytest.fixture(scope="module")
def poller(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    srv, namespace = start(
        store_kind,
        tmp_path_factory.mktemp(f"ws-longpoll-{store_kind}"),
        TIDINGS_TRANSPORT__MAX_WAITING_REQUESTS_PER_PROJECT="20",
    )
    yield srv
    srv.stop()
    namespace.drop()


class Socket:
    def __init__(self, ws: ClientConnection, project: str) -> None:
        self.ws = ws
        self.headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}

    def send(self, action: str, body: dict[str, Any]) -> None:
        self.ws.send(json.dumps({"action": action, "headers": self.headers, "body": body}))

    def receive(self) -> dict[str, Any]:
        raw = self.ws.recv(timeout=FRAME_BOUND)
        assert isinstance(raw, str), raw
        answer: dict[str, Any] = json.loads(raw)
        return answer

    def call(self, action: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.send(action, body)
        answer = self.receive()
        assert answer["request"]["action"] == action, answer
        return int(answer["headers"]["status"]), answer["body"]


@pytest.fixture
def project() -> str:
    return f"wslp-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sock(poller: TidingsServer, project: str) -> Iterator[Socket]:
    with connect("ws" + poller.url.removeprefix("http") + "/", open_timeout=FRAME_BOUND) as ws:
        yield Socket(ws, project)


@pytest.fixture
def producer(poller: TidingsServer, project: str) -> Iterator[httpx.Client]:
    with poller.client(project=project) as client:
        yield client


def post(client: httpx.Client, source: str, *bodies: Any) -> list[str]:
    resp = client.post(f"/{source}/messages", json={"messages": [{"body": b} for b in bodies]})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def test_a_waiting_claim_gets_a_message_posted_later(
    poller: TidingsServer, sock: Socket, producer: httpx.Client
) -> None:
    queue = name()
    sock.send("claim_create", {"queue_name": queue, "ttl": 60, "wait": LONG})
    Log(poller, queue).wait_for("waiting")
    (posted,) = post(producer, f"queues/{queue}", {"ws": 1})
    answer = sock.receive()
    assert answer["request"]["body"]["wait"] == LONG
    assert answer["headers"]["status"] == 201, answer
    assert [m["id"] for m in answer["body"]["messages"]] == [posted]
    assert answer["body"]["claim_id"]


@pytest.mark.parametrize("action", ["message_list", "topic_message_list"])
def test_a_waiting_listing_gets_a_message_posted_later(
    poller: TidingsServer, sock: Socket, producer: httpx.Client, action: str
) -> None:
    source = name()
    collection = "topics" if action.startswith("topic") else "queues"
    sock.send(action, {"queue_name": source, "wait": 12.5})
    Log(poller, source).wait_for("waiting")
    (posted,) = post(producer, f"{collection}/{source}", "hi")
    answer = sock.receive()
    assert answer["headers"]["status"] == 200, answer
    assert [m["id"] for m in answer["body"]["messages"]] == [posted]


def test_the_deadline_gives_the_empty_answers(sock: Socket) -> None:
    queue = name()
    assert sock.call("claim_create", {"queue_name": queue, "wait": 0.3}) == (
        204,
        {"claim_id": None},
    )
    assert sock.call("message_list", {"queue_name": queue, "wait": 0.3}) == (
        200,
        {"messages": []},
    )


@pytest.mark.parametrize("action", ["claim_create", "message_list"])
@pytest.mark.parametrize("value", [0, -1, 20.5, 100])
def test_out_of_range_waits_are_refused(sock: Socket, action: str, value: float) -> None:
    status, body = sock.call(action, {"queue_name": name(), "wait": value})
    assert status == 400, body
    assert '"wait"' in body["exception"]


@pytest.mark.parametrize("value", ["5", True, [1], {"s": 1}])
def test_a_wait_that_is_no_number_fails_the_schema(sock: Socket, value: Any) -> None:
    status, body = sock.call("claim_create", {"queue_name": name(), "wait": value})
    assert (status, body) == (400, {"error": "Schema validation failed."})


def test_other_frames_are_answered_while_one_waits(
    poller: TidingsServer, sock: Socket, producer: httpx.Client
) -> None:
    queue = name()
    sock.send("claim_create", {"queue_name": queue, "wait": LONG})
    Log(poller, queue).wait_for("waiting")
    # Answered before the waiting frame's.
    status, _ = sock.call("queue_get_stats", {"queue_name": queue})
    assert status == 200
    assert sock.call("claim_create", {"queue_name": queue}) == (204, {"claim_id": None})
    (posted,) = post(producer, f"queues/{queue}", "late")
    answer = sock.receive()
    assert answer["request"]["action"] == "claim_create"
    assert answer["request"]["body"]["wait"] == LONG
    assert [m["id"] for m in answer["body"]["messages"]] == [posted]


def test_past_the_connections_waiting_frames_a_frame_is_answered_at_once(
    poller: TidingsServer, sock: Socket, producer: httpx.Client
) -> None:
    queue = name()
    log = Log(poller, queue)
    for _ in range(MAX_WAITING_FRAMES):
        sock.send("claim_create", {"queue_name": queue, "wait": LONG, "limit": 1})
    log.wait_for("waiting", MAX_WAITING_FRAMES)
    # One more: answered without waiting, so its answer is the next frame.
    assert sock.call("claim_create", {"queue_name": queue, "wait": LONG}) == (
        204,
        {"claim_id": None},
    )
    posted = post(producer, f"queues/{queue}", *range(MAX_WAITING_FRAMES))
    got = []
    for _ in range(MAX_WAITING_FRAMES):
        answer = sock.receive()
        assert answer["headers"]["status"] == 201, answer
        got += [m["id"] for m in answer["body"]["messages"]]
    assert sorted(got) == sorted(posted)


def test_closing_the_connection_ends_its_waits(
    poller: TidingsServer, project: str, producer: httpx.Client
) -> None:
    queue = name()
    log = Log(poller, queue)
    with connect("ws" + poller.url.removeprefix("http") + "/", open_timeout=FRAME_BOUND) as ws:
        sock = Socket(ws, project)
        sock.send("claim_create", {"queue_name": queue, "wait": LONG})
        sock.send("message_list", {"queue_name": queue, "wait": LONG})
        log.wait_for("waiting", 2)
    log.wait_for("ended: cancelled", 2)
    (posted,) = post(producer, f"queues/{queue}", "kept")
    claimed = producer.post(f"/queues/{queue}/claims", json={})
    assert claimed.status_code == 201
    assert [m["id"] for m in claimed.json()["messages"]] == [posted]
