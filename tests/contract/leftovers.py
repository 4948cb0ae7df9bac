"""A look inside each driver: what it physically holds of a project's queues.

A deleted or purged deep queue may leave its rows to garbage collection (under a key no
queue reads any more); these count every message and claim the store holds for the
project, however filed, so a test can see them go.
"""

from __future__ import annotations

import sqlite3

from tidings.pooling.router import PooledStorage
from tidings.storage.base import Storage
from tidings.storage.postgres.database import SINGLE, Connection
from tidings.storage.postgres.driver import PostgresStorage
from tidings.storage.redis.driver import RedisStorage
from tidings.storage.redis.keys import QUEUE_KINDS
from tidings.storage.sqlite.driver import SQLiteStorage

_REDIS_RECORDS = QUEUE_KINDS.index("records")
_REDIS_CLAIMS = QUEUE_KINDS.index("claims")


async def stored_rows(storage: Storage, project: str, queues: list[str]) -> tuple[int, int]:
    """(messages, claims) the store holds for the project (Redis: for these queues, whose
    keys are the only place it files them)."""
    if isinstance(storage, PooledStorage):  # whatever any pool holds
        messages = claims = 0
        for _, pool in storage.open_pools():
            found = await stored_rows(pool, project, queues)
            messages, claims = messages + found[0], claims + found[1]
        return messages, claims
    if isinstance(storage, SQLiteStorage):

        def count(db: sqlite3.Connection) -> tuple[int, int]:
            messages = db.execute("SELECT count(*) FROM messages WHERE project = ?", (project,))
            claims = db.execute("SELECT count(*) FROM claims WHERE project = ?", (project,))
            return int(messages.fetchone()[0]), int(claims.fetchone()[0])

        return await storage._executor.read(count)
    if isinstance(storage, PostgresStorage):

        async def fetch(connection: Connection) -> tuple[int, int]:
            messages = "SELECT count(*) FROM messages WHERE project = $1"
            claims = "SELECT count(*) FROM claims WHERE project = $1"
            return (
                int(await connection.fetchval(messages, project)),
                int(await connection.fetchval(claims, project)),
            )

        return await storage._db.run(fetch, SINGLE)
    if isinstance(storage, RedisStorage):
        messages = claims = 0
        for queue in queues:
            keys = storage._b.keys.queue(project, queue)
            messages += int(await storage._b.client.hlen(keys[_REDIS_RECORDS]))
            claims += int(await storage._b.client.hlen(keys[_REDIS_CLAIMS]))
        return messages, claims
    raise TypeError(f"no look inside {type(storage).__name__}")
