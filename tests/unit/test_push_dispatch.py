"""How the dispatcher delivers pushes (``tidings.notify.dispatcher`` with ``PushSender``).

Pushes skip the webhook slots and go in batches (sent together, recorded with one
``done_many``), while a tenant's webhooks keep their share of slots even when that
tenant's takes are otherwise sized for pushes. Over a real SQLite store; the webhook
"subscriber" is an in-test sender that holds every send until released (a tarpit), and
the connections are in-test ``PushTarget``s collecting their frames.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from tests.contract.peek import stored_bodies
from tests.unit.push_nodes import NOTIFY, Connection, caller, node
from tidings.model import Delivery
from tidings.notify import push
from tidings.notify.push import subscribe_connection
from tidings.ops import messages, subscriptions
from tidings.ops.context import Services
from tidings.storage.sqlite.driver import SQLiteStorage

pytestmark = pytest.mark.anyio

Q = "pushed"
# Seconds a condition may take before the test fails: bounds a loaded machine, not speed.
BOUND = 20.0
SHARE = NOTIFY.max_deliveries_per_project


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Tarpit:
    """A webhook sender holding every send until released, counting what it holds."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.holding = 0
        self.most = 0
        self.sent: list[str | None] = []

    async def send(self, delivery: Delivery) -> None:
        self.holding += 1
        self.most = max(self.most, self.holding)
        try:
            await self.released.wait()
        finally:
            self.holding -= 1
        self.sent.append(delivery.message_id)

    async def close(self) -> None:
        return None


async def post(
    svc: Services, project: str, queue: str, first: int, count: int, per_request: int = 10
) -> None:
    """Post messages with bodies {"n": first} ... {"n": first + count - 1}, ten (or
    ``per_request``) a request."""
    end = first + count
    for start in range(first, end, per_request):
        batch = [
            {"body": {"n": n}, "ttl": 300} for n in range(start, min(start + per_request, end))
        ]
        raw = json.dumps({"messages": batch}).encode()
        await messages.message_post(svc, caller(project), queue, raw, len(raw))


async def until(probe: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait for ``probe`` to hold, within BOUND seconds."""
    deadline = time.monotonic() + BOUND
    while True:
        found = probe()
        if await found if inspect.isawaitable(found) else found:
            return
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


async def hook(svc: Services, project: str, queue: str, name: str) -> None:
    await subscriptions.subscription_create(
        svc, caller(project), queue, {"subscriber": f"http://{name}.example.invalid/hook"}
    )


async def test_pushes_skip_the_slots_a_tarpit_holds(tmp_path: Path) -> None:
    tarpit = Tarpit()
    async with node(tmp_path / "push.db", webhooks=tarpit) as n:
        for name in ("a", "b", "c"):
            await hook(n.svc, "hooks", "flood", name)
        await post(n.svc, "hooks", "flood", 0, 20)  # 60 webhooks owed to the tarpit
        await until(lambda: tarpit.holding >= SHARE, "the tarpit to hold its project's share")

        connection = Connection()
        n.registry.register(connection)
        await subscribe_connection(n.svc, caller("pushy"), Q, None, None, connection, False)
        await post(n.svc, "pushy", Q, 0, 300)
        await until(lambda: len(connection.frames) >= 300, "300 pushes")
        assert connection.numbers() == list(range(300))
        # Each push was recorded done: the store keeps none of their bodies any more.
        await until(lambda: _none_stored(n.storage, "pushy"), "the pushes to be recorded")
        # Meanwhile the tarpit held its project's share and was sent nothing more.
        assert (tarpit.holding, tarpit.most, tarpit.sent) == (SHARE, SHARE, [])

        tarpit.released.set()
        await until(lambda: len(tarpit.sent) == 60, "the webhooks to be delivered")
        assert tarpit.most == SHARE


async def test_webhooks_of_a_project_known_for_pushes_keep_their_share(tmp_path: Path) -> None:
    tarpit = Tarpit()
    async with node(tmp_path / "push.db", webhooks=tarpit) as n:
        connection = Connection()
        n.registry.register(connection)
        await subscribe_connection(n.svc, caller("mixed"), Q, None, None, connection, False)
        await post(n.svc, "mixed", Q, 0, 30)  # pushes alone: taken at the push share
        await until(lambda: len(connection.frames) >= 30, "the first pushes")

        for name in ("a", "b"):
            await hook(n.svc, "mixed", Q, name)
        # 40 webhooks and 20 pushes, leased together: one post, so one commit (two would
        # let the dispatcher take the first alone, and then the project's webhooks at
        # their share hold its later pushes back until the tarpit lets go).
        await post(n.svc, "mixed", Q, 30, 20, per_request=20)
        await until(lambda: len(connection.frames) >= 50, "the next pushes")
        await until(lambda: tarpit.holding >= SHARE, "the tarpit to hold the share")
        # The webhooks past the share were deferred, not sent.
        assert (tarpit.most, tarpit.sent) == (SHARE, [])

        tarpit.released.set()
        await until(lambda: len(tarpit.sent) == 40, "the webhooks to be delivered")
        assert tarpit.most == SHARE
        assert connection.numbers() == list(range(50))


async def test_pushes_to_another_node_are_relayed_in_batches(tmp_path: Path) -> None:
    async with (
        node(tmp_path / "shared.db") as a,
        node(tmp_path / "shared.db", dispatch=False) as b,
    ):
        connections = [Connection() for _ in range(3)]
        for index, connection in enumerate(connections):
            b.registry.register(connection)
            await subscribe_connection(b.svc, caller("p1"), Q, None, None, connection, index == 0)
        await post(a.svc, "p1", Q, 0, 40)  # only A dispatches: 120 pushes relayed to B
        await until(lambda: all(len(c.frames) >= 40 for c in connections), "the relayed pushes")
        packed, *text = connections
        packed_frames = [f for f in packed.frames if isinstance(f, bytes)]
        assert len(packed_frames) == len(packed.frames)
        numbers = sorted(msgspec.msgpack.decode(f)["body"]["n"] for f in packed_frames)
        assert numbers == list(range(40))
        for connection in text:
            assert connection.numbers() == list(range(40))


def test_relayed_batches_share_documents_within_their_size() -> None:
    # 40 messages to 10 connections, two of the messages past a batch's size.
    documents = [
        bytes([n]) * (push.RELAY_BATCH_BYTES + 1 if n in (3, 4) else 1000) for n in range(40)
    ]
    pushes = [(n, (f"c{n % 10}", f"s{n % 10}", "p", documents[n // 10])) for n in range(400)]
    batches = push._batches(pushes)
    assert [index for batch in batches for index, _ in batch] == list(range(400))  # in order
    for batch in batches:
        shared = {id(document): len(document) for _, (*_, document) in batch}
        size = sum(shared.values()) + push.RELAY_OVERHEAD * len(batch)
        assert len(batch) == 1 or size <= push.RELAY_BATCH_BYTES
        # What the node receives: the same pushes, each document sent once.
        relayed = push._encode_relayed([p for _, p in batch])
        assert len(relayed) < sum(shared.values()) + push.RELAY_OVERHEAD * len(batch)
        assert push._decode_relayed(relayed) == [p for _, p in batch]
    alone = [[i for i, _ in b] for b in batches if len(b[0][1][3]) > push.RELAY_BATCH_BYTES]
    assert alone == [[n] for n in range(30, 50)]
    with pytest.raises(msgspec.DecodeError):
        push._decode_relayed(msgspec.msgpack.encode([[b"doc"], [("c", "s", "p", 1)]]))


async def _none_stored(storage: SQLiteStorage, project: str) -> bool:
    return await stored_bodies(storage, project, Q) == 0
