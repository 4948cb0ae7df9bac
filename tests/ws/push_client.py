"""A WebSocket client speaking Zaqar's frames, for the push tests (the ``websockets``
library's synchronous client over a real connection)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
from websockets.sync.client import ClientConnection, connect

# Seconds a frame may take to arrive before the test fails (bounds a loaded machine).
FRAME_BOUND = 20.0


class ZaqarSocket:
    """One connection in one project; frames in JSON, or MessagePack when ``binary``."""

    def __init__(self, url: str, project: str, *, binary: bool = False) -> None:
        self.project = project
        self.binary = binary
        self.client_id = str(uuid.uuid4())
        # Entered as a context manager (websockets deprecates a bare connect()).
        self.ws: ClientConnection = connect(url, open_timeout=FRAME_BOUND, max_size=None)
        self.ws.__enter__()

    def send(self, action: str, body: dict[str, Any]) -> None:
        frame = {
            "action": action,
            "headers": {"Client-ID": self.client_id, "X-Project-ID": self.project},
            "body": body,
        }
        self.ws.send(msgspec.msgpack.encode(frame) if self.binary else json.dumps(frame))

    def receive(self) -> Any:
        """The next frame, decoded (a push is a bare notification, not a response)."""
        frame = self.ws.recv(timeout=FRAME_BOUND)
        if self.binary:
            assert isinstance(frame, bytes), f"expected a binary frame, got {frame!r}"
            return msgspec.msgpack.decode(frame)
        assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
        return json.loads(frame)

    def request(self, action: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Send a frame and read its response: (headers.status, body)."""
        self.send(action, body)
        answer = self.receive()
        assert answer["request"]["action"] == action, answer
        return int(answer["headers"]["status"]), answer["body"]

    def subscribe_self(self, queue: str, **body: Any) -> str:
        """subscription_create without a subscriber: the connection itself; its id."""
        status, answer = self.request("subscription_create", {"queue_name": queue, **body})
        assert status == 201, answer
        subscription_id: str = answer["subscription_id"]
        return subscription_id

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> ZaqarSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/"
