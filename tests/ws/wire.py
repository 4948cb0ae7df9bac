"""A small Zaqar WebSocket client for the transport tests (frames, limits, auth,
endpoints): the ``websockets`` library's synchronous client over a real connection."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from types import TracebackType
from typing import Any

import msgspec
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

# Seconds a frame may take to arrive before the test fails (bounds a loaded machine).
FRAME_BOUND = 20.0
UNDECODED = {"action": None, "body": {}, "headers": {}, "api": "v2"}


def ws_url(http_url: str, path: str = "/") -> str:
    return "ws" + http_url.removeprefix("http") + path


class Wire:
    """One connection; requests in JSON, or MessagePack when ``binary``."""

    def __init__(
        self,
        url: str,
        *,
        binary: bool = False,
        project: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_queue: int | None = 16,
    ) -> None:
        self.binary = binary
        self.headers = {
            "Client-ID": str(uuid.uuid4()),
            "X-Project-ID": project or f"ws-{uuid.uuid4().hex[:12]}",
        }
        self.ws: ClientConnection = connect(
            url, open_timeout=FRAME_BOUND, max_size=None, ssl=ssl_context, max_queue=max_queue
        )
        # Entered as a context manager (websockets deprecates a bare connect()).
        self.ws.__enter__()

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.ws.__exit__(kind, error, trace)

    def frame(
        self, action: Any, body: Any = None, headers: Any = None, **extra: str
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "action": action,
            "headers": {**self.headers, **extra} if headers is None else headers,
        }
        if body is not None:
            document["body"] = body
        return document

    def send(self, document: Any, *, binary: bool | None = None) -> None:
        if binary if binary is not None else self.binary:
            self.ws.send(msgspec.msgpack.encode(document))
        else:
            self.ws.send(json.dumps(document))

    def receive(self, *, binary: bool | None = None) -> dict[str, Any]:
        """The next frame, decoded; it must be in the expected encoding."""
        raw = self.ws.recv(timeout=FRAME_BOUND)
        if binary if binary is not None else self.binary:
            assert isinstance(raw, bytes), f"expected a binary frame, got {raw!r}"
            answer: dict[str, Any] = msgspec.msgpack.decode(raw)
        else:
            assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
            answer = json.loads(raw)
        return answer

    def request(self, action: Any, body: Any = None, **extra: str) -> dict[str, Any]:
        """The whole response to one frame."""
        self.send(self.frame(action, body, **extra))
        return self.receive()

    def call(self, action: str, body: Any = None, **extra: str) -> tuple[int, Any]:
        """(headers.status, body) of the response to one frame."""
        answer = self.request(action, body, **extra)
        return int(answer["headers"]["status"]), answer["body"]


class StalledReader:
    """A client that sends frames and reads nothing until told to: a raw socket with a
    small receive buffer, driven by websockets' Sans-I/O protocol (a library client
    keeps reading in the background, so it cannot stall for real)."""

    def __init__(self, url: str, receive_buffer: int = 32 * 1024) -> None:
        uri = parse_uri(url)
        self.protocol = ClientProtocol(uri, max_size=None)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before connecting, so that the window the server sees stays small.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(FRAME_BOUND)
        self.sock.connect((uri.host, uri.port))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while not any(isinstance(e, Response) for e in self._events()):
            pass
        self.code: int | None = None
        self.reason: str | None = None

    def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._flush()

    def read_until_closed(self) -> list[str]:
        """Every text frame until the server's close (``code``/``reason`` then set)."""
        texts: list[str] = []
        deadline = time.monotonic() + FRAME_BOUND
        while self.code is None:
            # Bounded as a whole: keepalive pings would keep each read short of timing out.
            assert time.monotonic() < deadline, "the server did not close the connection"
            for event in self._events():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    texts.append(bytes(event.data).decode())
                elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    received = self.protocol.close_rcvd
                    self.code = received.code if received else None
                    self.reason = received.reason if received else None
        return texts

    def close(self) -> None:
        self.sock.close()

    def _events(self) -> list[Any]:
        data = self.sock.recv(1 << 20)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
            if self.code is None:
                self.code = 1006  # dropped without a close frame
        events: list[Any] = self.protocol.events_received()
        self._flush()  # answers to pings and closes
        return events

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)
