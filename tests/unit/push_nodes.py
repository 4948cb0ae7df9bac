"""One server process's share of push, over a real SQLite store, for the push unit tests:
its store instance, push registry, services and dispatcher; the connection is a small
in-test ``PushTarget`` that collects its frames."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tidings.config import NotificationSettings, Settings
from tidings.notify.dispatcher import Dispatcher, Doorbell
from tidings.notify.push import SCHEME, PushRegistry, PushSender
from tidings.notify.senders import Sender
from tidings.ops.context import Caller, Services
from tidings.storage.sqlite.driver import SQLiteStorage

NOTIFY = NotificationSettings(poll_interval=0.05)


class Connection:
    """A connection as the registry sees it: the frames it was handed, in order."""

    def __init__(self, project: str | None = None) -> None:
        self.connection_id = uuid.uuid4().hex
        self.project = project
        self.frames: list[str | bytes] = []
        self.open = True

    def send_frame(self, frame: str | bytes) -> bool:
        if self.open:
            self.frames.append(frame)
        return self.open

    def numbers(self) -> list[int]:
        return sorted(msgspec.json.decode(f)["body"]["n"] for f in self.frames)


@dataclass
class Node:
    storage: SQLiteStorage
    registry: PushRegistry
    svc: Services


@asynccontextmanager
async def node(
    path: Path,
    *,
    lease: int = 60,
    clock: Callable[[], float] = time.time,
    dispatch: bool = True,
    webhooks: Sender | None = None,
) -> AsyncIterator[Node]:
    """A node on the store at ``path``; ``dispatch=False`` runs no dispatcher on it, and
    ``webhooks`` replaces the real webhook sender."""
    storage = SQLiteStorage(path)
    await storage.open()
    registry = PushRegistry(storage, lease, clock)
    registry.start()
    doorbell = Doorbell()
    svc = Services(
        settings=Settings(notification=NOTIFY), storage=storage, clock=clock,
        wake_dispatcher=doorbell.ring, push=registry,
    )  # fmt: skip
    dispatcher = Dispatcher(
        storage, NOTIFY, doorbell, clock,
        senders=None if webhooks is None else {"http": webhooks},
        extra_senders={SCHEME: PushSender(registry, storage)},
    )  # fmt: skip
    task = asyncio.create_task(dispatcher.run()) if dispatch else None
    try:
        yield Node(storage, registry, svc)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await dispatcher.close()
        await registry.close()
        await storage.close()


def caller(project: str = "p1") -> Caller:
    return Caller(project=project, client_id=str(uuid.uuid4()))
