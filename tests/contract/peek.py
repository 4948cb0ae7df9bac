"""A look inside each driver, for contract tests of what the Protocols cannot show.

Notification bodies are stored once per message (not once per delivery): these count
them, and write a delivery the way drivers did before, with its body inline.
"""

from __future__ import annotations

import sqlite3

import msgspec

from tidings.pooling.router import PooledStorage
from tidings.storage.base import Storage
from tidings.storage.postgres import subscriptions as postgres_subscriptions
from tidings.storage.postgres.database import WRITE, Connection
from tidings.storage.postgres.driver import PostgresStorage
from tidings.storage.redis import subscriptions as redis_subscriptions
from tidings.storage.redis.driver import RedisStorage
from tidings.storage.redis.keys import SOURCE_KINDS, slot_id
from tidings.storage.sqlite import driver as sqlite_driver
from tidings.storage.sqlite.driver import SQLiteStorage

_REDIS_BODIES = SOURCE_KINDS.index("bodies")
_REDIS_REFS = SOURCE_KINDS.index("body-refs")
_REDIS_SEQ = SOURCE_KINDS.index("notify-seq")
_REDIS_RECORDS = SOURCE_KINDS.index("notify")
_REDIS_DUE = SOURCE_KINDS.index("notify-due")


async def stored_bodies(storage: Storage, project: str, source: str) -> int:
    """Notification bodies the store holds for (project, source)."""
    if isinstance(storage, PooledStorage):  # in whichever pool they are
        return sum([await stored_bodies(pool, project, source) for _, pool in storage.open_pools()])
    if isinstance(storage, SQLiteStorage):

        def count(db: sqlite3.Connection) -> int:
            query = "SELECT count(*) FROM notification_bodies WHERE project = ? AND source = ?"
            return int(db.execute(query, (project, source)).fetchone()[0])

        return await storage._executor.read(count)
    if isinstance(storage, PostgresStorage):

        async def fetch(connection: Connection) -> int:
            query = "SELECT count(*) FROM notification_bodies WHERE project = $1 AND source = $2"
            return int(await connection.fetchval(query, project, source))

        return await storage._db.run(fetch, WRITE)
    if isinstance(storage, RedisStorage):
        keys = storage._b.keys.source(project, source)
        bodies = await storage._b.client.hlen(keys[_REDIS_BODIES])
        refs = await storage._b.client.hlen(keys[_REDIS_REFS])
        assert refs == bodies, "every stored body has its count of deliveries, and only those"
        return int(bodies)
    raise TypeError(f"no peek for {type(storage).__name__}")


async def owe_inline(
    storage: Storage,
    project: str,
    source: str,
    subscription_id: str,
    message_id: str,
    body: bytes,
    now: float,
) -> None:
    """Owe a notification the way drivers did before bodies were shared: body inline."""
    if isinstance(storage, PooledStorage):  # in the source's pool
        pool = await storage.store_of(project, source)
        assert pool is not None, "subscribe before owing"
        await owe_inline(pool, project, source, subscription_id, message_id, body, now)
    elif isinstance(storage, SQLiteStorage):

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO deliveries (project, source, subscription_id, kind, message_id,"
                " payload, ttl, delay, due) VALUES (?, ?, ?, 'notification', ?, ?, 300, 0, ?)",
                (project, source, subscription_id, message_id, body, now),
            )
            db.execute(sqlite_driver.Q["outbox_lower"], {"project": project, "due": now})

        await storage._executor.write(insert)
    elif isinstance(storage, PostgresStorage):

        async def write(connection: Connection) -> None:
            await connection.execute(
                "INSERT INTO deliveries (project, source, subscription_id, kind, message_id,"
                " payload, ttl, delay, due) VALUES ($1, $2, $3, 'notification', $4, $5, 300,"
                " 0, $6)",
                project, source, subscription_id, message_id, body, now,
            )  # fmt: skip
            await postgres_subscriptions.outbox_lower(connection, project, now)

        await storage._db.run(write, WRITE)
    elif isinstance(storage, RedisStorage):
        backend = storage._b
        keys = backend.keys.source(project, source)
        seq, records, due = keys[_REDIS_SEQ], keys[_REDIS_RECORDS], keys[_REDIS_DUE]
        # As cmsgpack packed it: the body a msgpack str (Redis' cmsgpack reads no bin).
        record = msgspec.msgpack.encode(
            (subscription_id, "notification", message_id, body.decode(), 300, 0, 0)
        )
        number = await backend.client.incr(seq)
        await backend.client.hset(records, str(number), record)
        await backend.client.zadd(due, {str(number): now})
        await redis_subscriptions.index_due(backend, slot_id(project, source), now)
    else:
        raise TypeError(f"no peek for {type(storage).__name__}")
