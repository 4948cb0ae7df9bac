"""HTTP connection limits: what a client that never finishes, or opens too much, can take.

Real servers and raw loopback sockets: oversize heads get 431/414, unfinished heads 408,
silent and idle keep-alive connections are closed, stalled bodies are dropped with the
memory they held, and past ``max_connections`` / ``max_concurrent_requests`` new work
gets a 503 while existing clients go on. Every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import inspect
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.websockets import websockets_sansio_impl

from tests.server import TidingsServer, client_headers

# Bound on any single wait for the server; generous, since the machine is shared.
WAIT = 20.0
MIB = 1024 * 1024


def connect(server: TidingsServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    received = bytearray()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(received)
        except TimeoutError:
            break
        if not chunk:
            return bytes(received)
        received += chunk
    raise AssertionError(f"the server kept the connection open for {WAIT}s: {received[:80]!r}")


def status_of(answer: bytes) -> int | None:
    """The status code of a raw HTTP answer; None when the server sent nothing."""
    if not answer:
        return None
    return int(answer.split(b" ", 2)[1])


def head(method: str, target: str, headers: dict[str, str], extra: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"


def ping(server: TidingsServer) -> int:
    """One GET /v2/ping on a fresh connection; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        conn.request("GET", "/v2/ping", headers=client_headers())
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def open_connections(server: TidingsServer) -> int:
    """Established TCP connections on the server's port, as the server sees them."""
    return sum(
        1 for conn in psutil.Process(server.pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_ESTABLISHED and conn.laddr and conn.laddr.port == server.port
    )


def server_rss(server: TidingsServer) -> int:
    root = psutil.Process(server.pid)
    return sum(proc.memory_info().rss for proc in [root, *root.children(recursive=True)])


@contextlib.contextmanager
def sockets(count: int, server: TidingsServer) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(connect(server))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_oversize_heads_are_refused_and_the_server_stays_responsive(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    server = make_server(tmp_path).start()
    # One 1 MiB header: refused as soon as 64 KiB of head have arrived.
    big = b"X-Big: " + b"a" * MIB + b"\r\n"
    with connect(server) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(head("GET", "/v2/ping", client_headers(), big))
        assert status_of(read_until_closed(sock)) == 431
    # Many headers that arrive whole, together over the limit.
    many = {f"X-Filler-{n}": "b" * 2000 for n in range(40)}
    with connect(server) as sock:
        sock.sendall(head("GET", "/v2/ping", {**client_headers(), **many}))
        assert status_of(read_until_closed(sock)) == 431
    # The same many headers pipelined behind a good request in one write.
    with connect(server) as sock:
        sock.sendall(head("GET", "/v2/ping", client_headers())
                     + head("GET", "/v2/ping", {**client_headers(), **many}))
        answer = read_until_closed(sock)
        assert status_of(answer) == 204
        assert b"HTTP/1.1 431 " in answer
    # A URL over max_url_length.
    with connect(server) as sock:
        sock.sendall(head("GET", "/v2/ping?x=" + "c" * 9000, client_headers()))
        assert status_of(read_until_closed(sock)) == 414
    # A header that never ends is cut off long before the client is done sending it.
    sent = 0
    with connect(server) as sock:
        sock.sendall(head("GET", "/v2/ping", client_headers())[:-2] + b"X-Endless: ")
        chunk = b"d" * 65536
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while sent < 64 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 64 * MIB
    # A large header within the limit is served, and so is a normal client.
    with connect(server) as sock:
        sock.sendall(head("GET", "/v2/ping", {**client_headers(), "X-Fat": "e" * 32768,
                                              "Connection": "close"}))
        assert status_of(read_until_closed(sock)) == 204
    assert ping(server) == 204


def test_unfinished_head_and_silent_connection_are_closed(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    server = make_server(tmp_path, env={"TIDINGS_SERVER__HEADER_TIMEOUT": "1"}).start()
    with connect(server) as unfinished, connect(server) as silent:
        unfinished.sendall(head("GET", "/v2/ping", client_headers())[:-2])  # no blank line
        answer = read_until_closed(unfinished)
        assert status_of(answer) == 408
        assert b"header_timeout" in answer
        assert read_until_closed(silent) == b""  # nothing sent: closed without an answer
    assert ping(server) == 204


def test_idle_keepalive_connection_is_closed(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    server = make_server(tmp_path, env={"TIDINGS_SERVER__KEEPALIVE_TIMEOUT": "1"}).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        for _ in range(3):  # keep-alive works while the client is busy
            conn.request("GET", "/v2/ping", headers=client_headers())
            response = conn.getresponse()
            response.read()
            assert response.status == 204
            assert not response.will_close
        assert conn.sock is not None
        assert read_until_closed(conn.sock) == b""
    finally:
        conn.close()
    # Pipelined requests are all answered, in order.
    with connect(server) as sock:
        sock.sendall(head("GET", "/v2/ping", client_headers()) * 2
                     + head("GET", "/v2/ping", {**client_headers(), "Connection": "close"}))
        assert read_until_closed(sock).count(b"HTTP/1.1 204 ") == 3


def test_stalled_bodies_are_dropped_with_their_memory(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    connections, size, short = 200, MIB, 122
    server = make_server(tmp_path, env={
        "TIDINGS_SERVER__BODY_TIMEOUT": "3",
        "TIDINGS_TRANSPORT__MAX_MESSAGES_POST_SIZE": str(2 * size),
    }).start()
    project = f"stall-{uuid.uuid4().hex[:8]}"
    # A body that is valid JSON well before its declared end: acting on the part
    # received would store a message the client was told failed.
    document = b'{"messages": [{"body": "stalled", "ttl": 300}]}'
    body = document + b" " * (size - len(document) - short)
    request = head("POST", "/v2/queues/stalled/messages", {
        **client_headers(project=project),
        "Content-Type": "application/json",
        "Content-Length": str(size),
    })
    for _ in range(20):
        assert ping(server) == 204  # warm up before the baseline
    baseline = server_rss(server)
    with sockets(connections, server) as stalled:
        for sock in stalled:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(request + body)
        answers = [read_until_closed(sock) for sock in stalled]
    assert {status_of(answer) for answer in answers} == {408}
    # The dropped bodies' memory goes back to the system, not only to the allocator.
    allowed = connections * size // 2
    deadline = time.monotonic() + WAIT
    while (grown := server_rss(server) - baseline) >= allowed and time.monotonic() < deadline:
        time.sleep(0.1)
    assert grown < allowed, f"RSS still {grown / MIB:.0f} MiB above its baseline"
    assert ping(server) == 204
    with server.client(project=project) as client:
        stats = client.get("/queues/stalled/stats")
        assert stats.status_code == 200
        assert stats.json()["messages"]["total"] == 0


def test_a_body_still_arriving_does_not_hold_up_a_shutdown(tmp_path: Path) -> None:
    """SIGTERM while a client is half way through a request body: that request is
    answered 503 and dropped, and the server exits by itself (not by the SIGKILL that
    ``stop()`` sends when SIGTERM did not do it)."""
    server = TidingsServer(tmp_path).start()
    headers = {**client_headers(), "Content-Type": "application/json", "Content-Length": "100"}
    sock = connect(server)
    try:
        sock.sendall(head("POST", "/v2/queues/q/messages", headers, b"") + b'{"mess')
        # A ping sent after those bytes is answered by the same event loop only after it
        # has read them: from then on the server holds a request in its body.
        assert ping(server) == 204
        assert server.process is not None
        os.killpg(server.pid, signal.SIGTERM)
        answer = read_until_closed(sock)
        assert status_of(answer) == 503, answer[:200]
        assert b"shutting down" in answer
        exit_code = server.process.wait(timeout=WAIT)
        assert exit_code != -signal.SIGKILL
    finally:
        sock.close()
        server.kill()


def test_connections_past_the_cap_get_503_and_others_go_on(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    cap = 20
    server = make_server(tmp_path, env={
        "TIDINGS_SERVER__MAX_CONNECTIONS": str(cap),
        "TIDINGS_SERVER__KEEPALIVE_TIMEOUT": "120",
    }).start()
    deadline = time.monotonic() + WAIT
    while open_connections(server) and time.monotonic() < deadline:
        time.sleep(0.05)  # the start-up probe's connection must be gone before we count
    clients = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
               for _ in range(cap)]

    def all_clients_ping() -> list[int]:
        statuses = []
        for conn in clients:
            conn.request("GET", "/v2/ping", headers=client_headers())
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        return statuses

    try:
        assert all_clients_ping() == [204] * cap  # every one accepted and counted
        with sockets(5, server) as extra:
            answers = [read_until_closed(sock) for sock in extra]
        assert [status_of(answer) for answer in answers] == [503] * 5
        assert all_clients_ping() == [204] * cap
    finally:
        for conn in clients:
            conn.close()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and ping(server) != 204:
        time.sleep(0.05)  # the server notices the closes within a loop turn or two
    assert ping(server) == 204


def test_requests_past_the_concurrency_cap_get_503(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    server = make_server(tmp_path, env={"TIDINGS_SERVER__MAX_CONCURRENT_REQUESTS": "2"}).start()
    request = head("POST", "/v2/queues/held/messages", {
        **client_headers(),
        "Content-Type": "application/json",
        "Content-Length": "100",
        "Expect": "100-continue",
    })
    with sockets(2, server) as holders:
        for sock in holders:
            sock.sendall(request)
            # 100 Continue means the app is running this request, waiting for its body.
            assert sock.recv(64).startswith(b"HTTP/1.1 100")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
        try:
            conn.request("GET", "/v2/ping", headers=client_headers())
            refused = conn.getresponse()
            body = json.loads(refused.read())
        finally:
            conn.close()
        # Zaqar's error format and a request id, like every other answer.
        assert refused.status == 503
        assert set(body) == {"title", "description"}
        assert refused.getheader("x-openstack-request-id", "").startswith("req-")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and ping(server) != 204:
        time.sleep(0.05)  # the held requests end once their clients have gone
    assert ping(server) == 204


# The uvicorn internals that tidings.http.server_protocol overrides or relies on. A new
# uvicorn that changes any of them fails here: review the subclass against the new
# code, then update the digests.
UVICORN_SOURCES = {
    "HttpToolsProtocol.__init__": "4f08999410347141",
    "HttpToolsProtocol.connection_made": "6efb565ff3d36b91",
    "HttpToolsProtocol.connection_lost": "c91a4c9bf2e29c55",
    "HttpToolsProtocol.data_received": "010a7ae59a5d3b1a",
    "HttpToolsProtocol.on_message_begin": "96d377fdc7c2baef",
    "HttpToolsProtocol.on_url": "37be44e962b04ca8",
    "HttpToolsProtocol.on_header": "65d62c044f61fdbd",
    "HttpToolsProtocol.on_headers_complete": "1ea8589acfad92d8",
    "HttpToolsProtocol.on_message_complete": "1fbad42dc31fc01f",
    "HttpToolsProtocol.on_response_complete": "64e254f28e389e76",
    "HttpToolsProtocol._start_asgi_task": "9c08c2571ae9b038",
    "RequestResponseCycle.receive": "8124ae006be71184",
    # The WebSocket upgrade, and the sansio send whose transport ws/endpoint.py aborts.
    "HttpToolsProtocol.handle_websocket_upgrade": "179c4f769386ab89",
    "websockets_sansio_impl.WebSocketsSansIOProtocol.send": "d4919ed760ce9f7b",
}


def _source_digest(qualname: str) -> str:
    module: Any = httptools_impl
    if qualname.startswith("websockets_sansio_impl."):
        module = websockets_sansio_impl
        qualname = qualname.partition(".")[2]
    owner, _, name = qualname.partition(".")
    member = getattr(getattr(module, owner), name)
    return hashlib.sha256(inspect.getsource(member).encode()).hexdigest()[:16]


@pytest.mark.parametrize("qualname", sorted(UVICORN_SOURCES))
def test_uvicorn_internals_are_the_reviewed_ones(qualname: str) -> None:
    assert _source_digest(qualname) == UVICORN_SOURCES[qualname], (
        f"uvicorn's {qualname} changed: review tidings/http/server_protocol.py against it"
    )
