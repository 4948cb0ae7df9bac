"""What one WebSocket client can take: frame size, frame rate, the server's memory for a
client that stops reading, and connections per worker. Every refusal but the last
resort (1009, 1008) is an error frame on a connection that stays open."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import TidingsServer, client_headers, wait_until
from tests.ws.wire import UNDECODED, StalledReader, Wire, ws_url
from tidings.ws.session import CLOSE_TIMEOUT

FRAME_SIZE = 2048
RATE = 200
SEND_QUEUE = 4
CONNECTIONS = 6
OVERFLOW = "Send queue overflow: the client reads too slowly."
OVERFLOW_LOG = "send queue overflowed"


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    srv = TidingsServer(
        tmp_path_factory.mktemp("ws-limits"),
        env={
            "TIDINGS_WEBSOCKET__MAX_FRAME_SIZE": str(FRAME_SIZE),
            "TIDINGS_WEBSOCKET__MAX_FRAMES_PER_SECOND": str(RATE),
            "TIDINGS_WEBSOCKET__MAX_SEND_QUEUE": str(SEND_QUEUE),
            "TIDINGS_WEBSOCKET__MAX_CONNECTIONS": str(CONNECTIONS),
            # WebSocket connections are not requests: they must not use these up.
            "TIDINGS_SERVER__MAX_CONCURRENT_REQUESTS": "2",
        },
    )
    srv.start()
    yield srv
    srv.stop()


def url(server: TidingsServer) -> str:
    return ws_url(server.url)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_an_oversized_frame_gets_an_error_frame(ws_server: TidingsServer, binary: bool) -> None:
    with Wire(url(ws_server), binary=binary) as wire:
        big = wire.frame("queue_create", {"queue_name": "q", "metadata": {"x": "y" * 3000}})
        wire.send(big)
        answer = wire.receive()
        assert answer["request"] == UNDECODED
        assert answer["headers"] == {"status": 413}
        assert "at most 2048 are accepted ([websocket] max_frame_size)" in answer["body"]["error"]
        assert wire.call("queue_list")[0] == 200  # still open


def test_a_frame_past_four_times_the_limit_closes_the_connection(
    ws_server: TidingsServer,
) -> None:
    with Wire(url(ws_server)) as wire:
        wire.ws.send("x" * (4 * FRAME_SIZE + 1))
        with pytest.raises(ConnectionClosed):
            wire.ws.recv(timeout=20)
        assert wire.ws.close_code == 1009


def test_a_frame_flood_gets_429_frames_then_service_again(ws_server: TidingsServer) -> None:
    sent = 3 * RATE
    with Wire(url(ws_server)) as wire:
        frame = wire.frame("nope")
        for _ in range(sent):
            wire.send(frame)
        answers = [wire.receive() for _ in range(sent)]
        statuses = [a["headers"]["status"] for a in answers]
        # The bucket holds one second's worth: at least that many pass, and not all.
        assert statuses.count(400) >= RATE - 1, statuses
        assert statuses.count(429) >= 1, statuses
        assert set(statuses) == {400, 429}
        refused = next(a for a in answers if a["headers"]["status"] == 429)
        assert refused["body"] == {
            "error": f"Too many frames: at most {RATE} per second on one connection "
            "([websocket] max_frames_per_second)."
        }
        wait_until(lambda: wire.call("queue_list")[0] == 200, "frames to be served again")


def overflows(server: TidingsServer) -> int:
    return server.log().count(OVERFLOW_LOG)


def test_a_client_that_stops_reading_is_closed_with_1008(ws_server: TidingsServer) -> None:
    project = f"slow-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=ws_server.url + "/v2", headers=client_headers(project)) as api:
        posted = api.post(
            "/queues/big/messages",
            json={"messages": [{"body": "x" * 12000, "ttl": 600} for _ in range(20)]},
        )
        assert posted.status_code == 201, posted.text
    request = json.dumps(
        {
            "action": "message_list",
            "headers": client_headers(project),
            "body": {"queue_name": "big", "limit": 20, "echo": True},
        }
    )
    sent = 150  # each answer is ~240 KB: far more than the socket buffers hold
    seen = overflows(ws_server)

    def stall() -> StalledReader:
        reader = StalledReader(url(ws_server))
        for _ in range(sent):
            reader.send_text(request)  # the server keeps reading (and dropping) them
        # The server gives up on the reader (and says so in its log).
        wait_until(lambda: overflows(ws_server) > seen, "the send queue to overflow")
        return reader

    # A reader that reads again later gets the answers sent so far, then the close.
    reader = stall()
    try:
        answers = reader.read_until_closed()
    finally:
        reader.close()
    assert (reader.code, reader.reason) == (1008, OVERFLOW)
    assert all(json.loads(a)["headers"]["status"] == 200 for a in answers)
    # What was queued for it was dropped, not kept: it got far from every answer.
    assert len(answers) < sent // 2, len(answers)

    # One that never reads again is dropped, so it holds no buffers for long.
    seen = overflows(ws_server)
    reader = stall()
    try:
        port = reader.sock.getsockname()[1]
        process = psutil.Process(ws_server.pid)
        wait_until(
            lambda: not any(
                c.raddr and c.raddr.port == port for c in process.net_connections(kind="tcp")
            ),
            "the server to drop the connection",
            timeout=CLOSE_TIMEOUT + 20,
            interval=0.5,
        )
    finally:
        reader.close()


def test_connections_past_the_cap_are_refused(ws_server: TidingsServer) -> None:
    def open_all() -> list[Wire] | None:
        opened: list[Wire] = []
        try:
            for _ in range(CONNECTIONS):
                opened.append(Wire(url(ws_server)))
        except InvalidStatus:  # connections of earlier tests are still closing
            for wire in opened:
                wire.ws.close()
            return None
        return opened

    opened = wait_until(open_all, f"{CONNECTIONS} connections to be accepted")
    try:
        with pytest.raises(InvalidStatus) as refused:
            Wire(url(ws_server))
        assert refused.value.response.status_code == 403
        # HTTP goes on: open WebSockets count neither as connections of the HTTP API's
        # cap nor as requests in flight (the cap here is 2).
        ping = httpx.get(ws_server.url + "/v2/ping", headers=client_headers(), timeout=20)
        assert ping.status_code == 204
        assert all(wire.call("queue_list")[0] == 200 for wire in opened)
        opened.pop().ws.close()

        def one_more() -> bool:
            try:
                opened.append(Wire(url(ws_server)))
            except InvalidStatus:
                return False
            return True

        wait_until(one_more, "a freed connection slot")
    finally:
        for wire in opened:
            wire.ws.close()
