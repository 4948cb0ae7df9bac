"""The WebSocket session's send queue: bounded in frames and in bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tidings.admission.auth.factory import create_authenticator
from tidings.config import Settings, WebsocketSettings
from tidings.ops.context import Services
from tidings.storage.sqlite.driver import SQLiteStorage
from tidings.ws.session import Session


async def _never_sent(message: Any) -> None:
    raise AssertionError("nothing is written in these tests")


def session(tmp_path: Path, **websocket: Any) -> Session:
    settings = Settings(websocket=WebsocketSettings(**websocket))
    services = Services(settings=settings, storage=SQLiteStorage(tmp_path / "unused.db"))
    return Session(services, create_authenticator(settings), _never_sent)


def test_a_large_frame_alone_fits_but_not_behind_others(tmp_path: Path) -> None:
    slow = session(tmp_path, max_send_queue=100, max_send_queue_bytes=4096)
    assert slow.send_frame(b"x" * 10_000)  # one answer may exceed the byte bound
    assert not slow.send_frame("y")  # anything behind it overflows: closed, 1008
    assert not slow.send_frame("z")  # and stays closed


def test_small_frames_fill_the_byte_bound_before_the_frame_bound(tmp_path: Path) -> None:
    slow = session(tmp_path, max_send_queue=100, max_send_queue_bytes=4096)
    accepted = 0
    while accepted < 100 and slow.send_frame(b"x" * 1000):
        accepted += 1
    assert accepted == 4


def test_the_frame_bound_holds_for_tiny_frames(tmp_path: Path) -> None:
    slow = session(tmp_path, max_send_queue=3)
    assert [slow.send_frame("a") for _ in range(4)] == [True, True, True, False]
