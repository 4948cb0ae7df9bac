"""What a running server's outbox still owes, read straight from its store.

Tests use this to show that something did *not* happen without sleeping: a delivery
leaves the outbox only once its outcome is recorded (sent and answered, or given up),
so when a source owes nothing, every notification it will ever send has been sent and
none can follow. (Deleting a subscription or a queue removes what it owed at once, while
an attempt may still be on its way: tests of deletion need a later event as well.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import cast
from urllib.parse import urlsplit

import asyncpg
import redis

from tests.server import TidingsServer, wait_until
from tidings.namespace import TOPIC_NAMESPACE
from tidings.storage.postgres.database import parse_uri as parse_postgres_uri
from tidings.storage.postgres.database import quote_ident
from tidings.storage.redis.connection import parse_uri as parse_redis_uri
from tidings.storage.redis.keys import SOURCE_KINDS, KeySpace
from tidings.storage.sqlite.driver import path_from_uri

_DUE = SOURCE_KINDS.index("notify-due")  # a source's owed deliveries, scored by due time


def owed(store_uri: str, project: str, source: str, collection: str = "queues") -> int:
    """Deliveries (notifications and confirmations) the store still owes for a source."""
    return len(dues(store_uri, project, source, collection))


def dues(store_uri: str, project: str, source: str, collection: str = "queues") -> list[float]:
    """When each delivery owed for a source is due next (a leased one: when its lease ends)."""
    if collection == "topics":
        project += TOPIC_NAMESPACE
    scheme = urlsplit(store_uri).scheme
    query = "SELECT due FROM {table} WHERE project = {p1} AND source = {p2} ORDER BY due"
    if scheme == "sqlite":
        path = path_from_uri(store_uri).resolve().as_uri()
        db = sqlite3.connect(f"{path}?mode=ro", uri=True, timeout=10)
        try:
            sql = query.format(table="deliveries", p1="?", p2="?")
            return [float(row[0]) for row in db.execute(sql, (project, source))]
        finally:
            db.close()
    if scheme.startswith("redis"):
        keyspace = parse_redis_uri(store_uri)
        client = redis.Redis.from_url(keyspace.url)
        try:
            key = KeySpace(keyspace.prefix).source(project, source)[_DUE]
            scored = cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))
            return [float(score) for _, score in scored]
        finally:
            client.close()
    if scheme.startswith("postgres"):
        target = parse_postgres_uri(store_uri)
        sql = query.format(table=f"{quote_ident(target.schema)}.deliveries", p1="$1", p2="$2")
        return asyncio.run(_fetch_postgres(target.dsn, sql, project, source))
    raise ValueError(f"no outbox peek for {store_uri}")


async def _fetch_postgres(dsn: str, sql: str, project: str, source: str) -> list[float]:
    connection = await asyncpg.connect(dsn)
    try:
        return [float(row[0]) for row in await connection.fetch(sql, project, source)]
    finally:
        await connection.close()


def wait_settled(
    server: TidingsServer, project: str, *sources: str, collection: str = "queues"
) -> None:
    """Wait until the server owes nothing for any of ``sources`` (bounded)."""
    for source in sources:

        def settled(source: str = source) -> bool:
            return owed(server.store_uri, project, source, collection) == 0

        wait_until(settled, f"the outbox of {collection}/{source} to settle")
