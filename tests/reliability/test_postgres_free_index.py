"""PostgreSQL: claims, pops and listings read the READY index of a settled queue.

Work is asserted by counting, never by timing: which index each hot statement is planned
on (with no statistics, and with fresh ones), how many rows its scans return under
EXPLAIN ANALYZE, and how many rows one settle changes at most.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from tests import backends
from tidings.config import StorageSettings
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.postgres.driver import SETTLE_MAX_CHUNKS, PostgresStorage, Q

pytestmark = pytest.mark.anyio

BUDGET = 100
P = "project-a"
QUEUE = "deep"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
# Rows of each kind at the head of a queue: as many as one settle takes.
KIND = SETTLE_MAX_CHUNKS * BUDGET
COLUMNS = [
    "id", "project", "queue", "body", "client_id", "ttl", "created", "expires",
    "delay_until", "delayed", "claim_id", "claim_expires", "claim_count",
]  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = backends.unique_name("f")
    try:
        yield name
    finally:
        await backends.drop_postgres_schema(name)


@pytest.fixture
async def storage(schema: str) -> AsyncIterator[PostgresStorage]:
    settings = StorageSettings(operation_timeout=10.0, scan_budget=BUDGET)
    store = PostgresStorage.from_uri(backends.postgres_store_uri(schema), settings)
    await store.open()
    await store.upgrade()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sql(schema: str, storage: PostgresStorage) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(
        backends.POSTGRES_DSN,
        server_settings={"search_path": f'"{schema}"', "plan_cache_mode": "force_custom_plan"},
    )
    try:
        yield connection
    finally:
        await connection.close()


def deep_rows(claim_id: uuid.UUID, queue: str = QUEUE) -> Iterator[tuple[Any, ...]]:
    """Held, delayed, expired and lapsed messages at the head; free ones behind them."""
    live, gone = T0 + 3_600, T0 + 60
    kinds = [
        (live, 0.0, False, claim_id, T0 + 300),  # held by a live claim
        (live, T0 + 600, True, None, 0.0),  # delayed
        (gone, 0.0, False, None, 0.0),  # expired at T0 + 60
        (live, 0.0, False, uuid.uuid4(), T0 + 30),  # claim lapsed at T0 + 30
        (live, 0.0, False, None, 0.0),  # free
    ]
    for expires, delay_until, delayed, held_by, claim_expires in kinds:
        for _ in range(KIND):
            yield (
                uuid.uuid4(), P, queue, b"{}", CLIENT, 60, T0, expires, delay_until, delayed,
                held_by, claim_expires, int(held_by is not None),
            )  # fmt: skip


async def load(sql: asyncpg.Connection, schema: str) -> None:
    """The deep queue, and another queue as deep, without statistics or autovacuum."""
    await sql.execute("ALTER TABLE messages SET (autovacuum_enabled = false)")
    claim_id = uuid.uuid4()
    await sql.execute(
        "INSERT INTO claims VALUES ($1, $2, $3, 300, 60, $4, $5)", claim_id, P, QUEUE, T0, T0 + 300
    )
    for queue in (QUEUE, "other"):
        # A queue's rows are read through its row (migration 0006): it files them by name.
        await sql.execute(
            "INSERT INTO queues (project, name, metadata, created, rows_key)"
            " VALUES ($1, $2, '{}', $3, $2)",
            P, queue, T0,
        )  # fmt: skip
        await sql.copy_records_to_table(
            "messages", records=list(deep_rows(claim_id, queue)), columns=COLUMNS,
            schema_name=schema,
        )  # fmt: skip


NOW = T0 + 120
SETTLING = {"messages_lapsing", "messages_delayed", "messages_unclaimed_expiry"}
READY = {"messages_ready"}
# Each hot statement, its arguments, and the only indexes it may be planned on. A read of
# a settled queue may first probe the indexes of the settle (its last argument: check);
# here it finds something to settle, so it reads nothing else.
STATEMENTS: list[tuple[str, tuple[Any, ...], set[str]]] = [
    ("message_settle", (P, QUEUE, NOW, BUDGET), SETTLING),
    ("claim_create", (P, QUEUE, str(uuid.uuid4()), NOW, 10, NOW + 60, 60, 60, BUDGET, None, False),
     READY),
    ("claim_create", (P, QUEUE, str(uuid.uuid4()), NOW, 10, NOW + 60, 60, 60, BUDGET, None, True),
     SETTLING | READY),
    ("message_claimable", (P, QUEUE, NOW, 10, BUDGET), READY),
    ("message_pop", (P, QUEUE, NOW, 10, BUDGET, False), READY),
    ("message_list_ready", (P, QUEUE, 0, 10, NOW, None, BUDGET, False), READY),
    ("message_list_unclaimed", (P, QUEUE, 0, 10, NOW, None, BUDGET, False), {"messages_free"}),
    ("message_list_all", (P, QUEUE, 0, 10, NOW, None, False, BUDGET, True),
     SETTLING | {"messages_pkey"}),
    ("gc_messages", (NOW, 1000), {"messages_expiry"}),
    # Stats count only what no settle has applied yet (here: a settle's worth), and the
    # ends; a delete or purge takes a chunk of the queue in post order.
    # ... and the delayed ones from their index, at most the budget's worth.
    ("queue_stats", (P, QUEUE, NOW, BUDGET, False),
     {"messages_unclaimed_expiry", "messages_lapsing", "messages_delayed", "messages_pkey"}),
    ("queue_stats", (P, QUEUE, NOW, BUDGET, True), SETTLING | {"messages_pkey"}),
    ("queue_drop_messages", (P, QUEUE, BUDGET, 0), {"messages_pkey"}),
]  # fmt: skip


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


async def explain(sql: asyncpg.Connection, name: str, args: tuple[Any, ...]) -> list[Any]:
    """Plan nodes of one statement run under EXPLAIN ANALYZE, its changes rolled back."""
    transaction = sql.transaction()
    await transaction.start()
    try:
        raw = await sql.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {Q[name]}", *args)
    finally:
        await transaction.rollback()
    return list(plan_nodes(json.loads(raw)[0]["Plan"]))


def indexes_used(nodes: list[Any]) -> dict[str, int]:
    """Rows each index of ``messages`` returned; a walk of the table counts as its own."""
    used: dict[str, int] = {}
    for node in nodes:
        name = node.get("Index Name", "")
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "messages":
            name = "sequential scan"
        if name.startswith("messages") or name == "sequential scan":
            used[name] = used.get(name, 0) + int(node["Actual Rows"])
    return used


async def test_each_hot_statement_uses_its_own_index(sql: asyncpg.Connection, schema: str) -> None:
    await load(sql, schema)
    for statistics in ("none", "fresh"):
        if statistics == "fresh":
            await sql.execute("ANALYZE messages")
        for name, args, allowed in STATEMENTS:
            used = indexes_used(await explain(sql, name, args))
            assert set(used) == allowed, f"{name} with {statistics} statistics: {used}"
            if args[-1] is True:  # pending: only the probes ran
                assert {i for i, rows in used.items() if rows} <= SETTLING, f"{name}: {used}"


async def test_a_settled_queue_is_read_without_walking(
    storage: PostgresStorage, sql: asyncpg.Connection, schema: str
) -> None:
    await load(sql, schema)
    await sql.execute("ANALYZE messages")
    lapsed_first = await sql.fetchval(
        "SELECT min(seq) FROM messages WHERE queue = $1 AND claim_expires = $2", QUEUE, T0 + 30
    )
    result = await storage.claims.create(P, QUEUE, ClaimRequest(ttl=60, grace=60, limit=10), NOW)
    assert result is not None and len(result.messages) == 10
    # The lapsed claims came back first, in post order; only the expired ones are gone.
    assert [int(m.marker) for m in result.messages] == list(range(lapsed_first, lapsed_first + 10))
    assert await sql.fetchval("SELECT count(*) FROM messages WHERE queue = $1", QUEUE) == 4 * KIND
    # Settled: the settle's probes find nothing, and a claim reads only what it returns.
    claim = (P, QUEUE, str(uuid.uuid4()), NOW, 10, NOW + 60, 60, 60, BUDGET, None, True)
    returned = indexes_used(await explain(sql, "claim_create", claim))
    assert returned == {name: 0 for name in SETTLING} | {"messages_ready": 10}


async def test_one_settle_is_bounded_and_reads_stay_right(
    storage: PostgresStorage, sql: asyncpg.Connection
) -> None:
    head = SETTLE_MAX_CHUNKS * BUDGET * 2 + 500
    for start in range(0, head, 1000):
        batch = [NewMessage(body=b"0", ttl=60) for _ in range(min(1000, head - start))]
        await storage.messages.post(P, QUEUE, lambda _m, b=batch: b, CLIENT, T0)
    free = [NewMessage(body=b"1", ttl=3_600) for _ in range(5)]
    await storage.messages.post(P, QUEUE, lambda _m: free, CLIENT, T0)
    request = ClaimRequest(ttl=60, grace=60, limit=10)
    left = head
    for _ in range(2):  # each call settles its share and walks at most a window
        assert await storage.claims.create(P, QUEUE, request, NOW) is None
        left -= SETTLE_MAX_CHUNKS * BUDGET
        assert await sql.fetchval("SELECT count(*) FROM messages WHERE expires <= $1", NOW) == left
    result = await storage.claims.create(P, QUEUE, request, NOW)
    assert result is not None and [m.body for m in result.messages] == [b"1"] * 5


async def test_concurrent_claims_share_lapsed_messages_exactly_once(
    storage: PostgresStorage,
) -> None:
    batch = [NewMessage(body=str(n).encode(), ttl=3_600) for n in range(300)]
    await storage.messages.post(P, QUEUE, lambda _m: batch, CLIENT, T0)
    for _ in range(3):
        assert await storage.claims.create(P, QUEUE, ClaimRequest(ttl=60, grace=60, limit=100), T0)
    later = T0 + 61  # every claim lapsed: all 300 go back to READY when settled
    request = ClaimRequest(ttl=60, grace=60, limit=50)
    taken: list[str] = []
    for _ in range(20):  # bounded: 300 messages, 10 claimers of 50 a round
        results = await asyncio.gather(
            *(storage.claims.create(P, QUEUE, request, later) for _ in range(10))
        )
        found = [m.body.decode() for r in results if r is not None for m in r.messages]
        if not found:
            break
        taken += found
    assert sorted(taken, key=int) == [str(n) for n in range(300)]
