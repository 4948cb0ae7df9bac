"""PostgreSQL change feed: the LISTEN connection recovers by itself, relays survive it.

The listener is killed with pg_terminate_backend, as an operator or a failover would;
for an outage that lasts, the node's role is refused new connections meanwhile. Every
wait is on a condition with a bound; nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests import backends
from tidings.config import StorageSettings
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.base import PreparePost
from tidings.storage.postgres.driver import PostgresStorage
from tidings.storage.postgres.feed import RELAY_KEPT, F, PostgresFeed

pytestmark = pytest.mark.anyio

P = "project-feed"
Q = "queue-1"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
BOUND = 15.0  # bounds a loaded CI machine, not the feed's speed
SETTINGS = StorageSettings(operation_timeout=5.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = backends.unique_name("e")
    try:
        yield name
    finally:
        await backends.drop_postgres_schema(name)


@pytest.fixture
async def sql() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(backends.POSTGRES_DSN)
    try:
        yield connection
    finally:
        await connection.close()


async def opened(uri: str) -> PostgresStorage:
    store = PostgresStorage.from_uri(uri, SETTINGS)
    await store.open()
    return store


def batch(body: int) -> PreparePost:
    return lambda _metadata: [NewMessage(body=str(body).encode(), ttl=300)]


async def eventually(probe: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def listener_pids(sql: asyncpg.Connection, feed: PostgresFeed) -> list[int]:
    rows = await sql.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", feed.application_name
    )
    return [int(row[0]) for row in rows]


async def kill_listener(sql: asyncpg.Connection, feed: PostgresFeed) -> int:
    """Terminate the feed's LISTEN connection and wait until its backend is gone."""
    [pid] = await listener_pids(sql, feed)
    assert await sql.fetchval("SELECT pg_terminate_backend($1, 5000)", pid) is True
    return pid


def relay_sink(feed: PostgresFeed) -> list[bytes]:
    arrived: list[bytes] = []
    feed.on_relay(arrived.append)
    return arrived


async def test_a_killed_listener_reconnects_and_hears_again(
    schema: str, sql: asyncpg.Connection
) -> None:
    uri = backends.postgres_store_uri(schema)
    node, other = await opened(uri), await opened(uri)
    try:
        feed = node.feed
        arrived = relay_sink(feed)
        await eventually(lambda: feed.sessions == 1, "the feed to listen")
        before = feed.watch(P, Q)
        killed = await kill_listener(sql, feed)
        await eventually(lambda: feed.sessions == 2, "the feed to listen again")
        assert (await listener_pids(sql, feed)) not in ([], [killed])
        # Signals sent while nobody listened are lost: the reconnect wakes every watcher.
        assert await before.wait(BOUND) is True
        # A watch begun afterwards is woken by the post alone (the reconnect's wake-up
        # happened before it began).
        async with feed.watch(P, Q) as after:
            await other.messages.post(P, Q, batch(1), CLIENT, T0)
            assert await after.wait(BOUND) is True
        await other.feed.relay(feed.node_id, b"after the reconnect")
        await eventually(lambda: arrived == [b"after the reconnect"], "the relayed payload")
        before.close()
    finally:
        await other.close()
        await node.close()


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
async def role(sql: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role of its own, whose connections the test can refuse for a while."""
    name = backends.unique_name("role")
    database = await sql.fetchval("SELECT current_database()")
    await sql.execute(f'CREATE ROLE "{name}" LOGIN')
    await sql.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{name}"')
    try:
        yield name
    finally:
        await sql.execute(f'DROP OWNED BY "{name}" CASCADE')
        await sql.execute(f'DROP ROLE "{name}"')


async def test_a_relay_sent_during_an_outage_arrives_after_it(
    schema: str, role: str, sql: asyncpg.Connection
) -> None:
    # The node connects as its own role (and owns the schema); the sender as the default.
    uri = backends.postgres_store_uri(schema)
    node = await opened(backends.postgres_store_uri(schema, as_role(backends.POSTGRES_DSN, role)))
    other = None
    try:
        feed = node.feed
        arrived = relay_sink(feed)
        await eventually(lambda: feed.sessions == 1, "the feed to listen")
        other = await opened(uri)
        waiting = feed.watch(P, Q)
        await sql.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
        await kill_listener(sql, feed)
        # The node cannot listen again now: what follows happens during its outage.
        await other.feed.relay(feed.node_id, b"during the outage")
        await other.messages.post(P, Q, batch(1), CLIENT, T0)
        assert await sql.fetchval(f'SELECT count(*) FROM "{schema}".feed_relay') == 1
        assert feed.sessions == 1
        await sql.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        await eventually(lambda: feed.sessions == 2, "the feed to listen again")
        await eventually(lambda: arrived == [b"during the outage"], "the missed relay")
        assert await waiting.wait(BOUND) is True
        assert await sql.fetchval(f'SELECT count(*) FROM "{schema}".feed_relay') == 0
        waiting.close()
    finally:
        await sql.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        if other is not None:
            await other.close()
        await node.close()


async def test_schemas_sharing_a_database_do_not_hear_each_other(
    schema: str, sql: asyncpg.Connection
) -> None:
    elsewhere = backends.unique_name("e")
    here = await opened(backends.postgres_store_uri(schema))
    there = await opened(backends.postgres_store_uri(elsewhere))
    try:
        assert here.feed.ready_channel != there.feed.ready_channel
        await eventually(lambda: here.feed.sessions == 1, "the feed to listen")
        async with here.feed.watch(P, Q) as quiet, here.feed.watch(P, "marker") as marker:
            await there.messages.post(P, Q, batch(1), CLIENT, T0)
            await here.messages.post(P, "marker", batch(2), CLIENT, T0)
            # Notifications arrive in commit order: once the later one is heard, the
            # earlier one would have been too, had it been sent to this schema.
            assert await marker.wait(BOUND) is True
            # Already set if it was ever signalled (wait(0) cannot tell: it never waits).
            assert await quiet.wait(0.05) is False
    finally:
        await there.close()
        await here.close()
        await backends.drop_postgres_schema(elsewhere)


async def test_relayed_rows_of_a_gone_node_are_collected(schema: str) -> None:
    node = await opened(backends.postgres_store_uri(schema))
    try:
        await node.feed.relay("a-node-that-is-gone", b"x" * 1000)
        sent = time.time()
        await node.collect_garbage(sent - RELAY_KEPT - 60)
        assert await count_relayed(schema) == 1
        await node.collect_garbage(sent + RELAY_KEPT + 60)
        assert await count_relayed(schema) == 0
    finally:
        await node.close()


async def count_relayed(schema: str) -> int:
    connection = await asyncpg.connect(backends.POSTGRES_DSN)
    try:
        return int(await connection.fetchval(f'SELECT count(*) FROM "{schema}".feed_relay'))
    finally:
        await connection.close()


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


async def test_next_ready_probes_two_indexes(schema: str, sql: asyncpg.Connection) -> None:
    node = await opened(backends.postgres_store_uri(schema))
    try:
        # A queue whose every message is claimed or delayed, in both index orders.
        for body in range(200):
            await node.messages.post(P, Q, batch(body), CLIENT, T0)
        request = ClaimRequest(ttl=60, grace=60, limit=20)
        for offset in range(5):
            assert await node.claims.create(P, Q, request, T0 + offset) is not None
        delayed = [NewMessage(body=b"1", ttl=300, delay=1 + i % 50) for i in range(100)]
        await node.messages.post(P, Q, lambda _metadata: delayed, CLIENT, T0)
        await sql.execute(f'SET search_path TO "{schema}"')
        for statistics in ("none", "fresh"):
            if statistics == "fresh":
                await sql.execute("ANALYZE messages")
            raw = await sql.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {F['feed_next_ready']}", P, Q)
            nodes = list(plan_nodes(json.loads(raw)[0]["Plan"]))
            scans = {
                n.get("Index Name", n["Node Type"]): int(n["Actual Rows"])
                for n in nodes
                if n.get("Relation Name") == "messages"
            }
            assert scans == {"messages_lapsing": 1, "messages_delayed": 1}, statistics
        assert await node.feed.next_ready(P, Q, T0) == pytest.approx(T0 + 1)
    finally:
        await node.close()


async def test_a_claim_renewed_shorter_wakes_watchers(schema: str) -> None:
    # A waiter's timer was set from next_ready: an earlier expiry must reach it.
    node = await opened(backends.postgres_store_uri(schema))
    try:
        async with node.feed.watch(P, Q) as watch:
            await node.messages.post(P, Q, batch(1), CLIENT, T0)
            assert await watch.wait(BOUND) is True
            claimed = await node.claims.create(P, Q, ClaimRequest(ttl=300, grace=60, limit=1), T0)
            assert claimed is not None
            assert await node.claims.renew(P, Q, claimed.id, 60, 60, T0 + 1) is True
            assert await watch.wait(BOUND) is True
            assert await node.feed.next_ready(P, Q, T0 + 1) == pytest.approx(T0 + 61)
    finally:
        await node.close()
