"""The stores the benchmark runs Tidings over, and what each holds per message.

Redis runs as a private redis-server with the recommended durable setting (AOF,
``appendfsync always``) so that every store acknowledges only what is on disk;
PostgreSQL uses the machine's server with a schema of its own; SQLite a fresh file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from servers import BENCH_DIR  # noqa: F401 - puts the repository root on sys.path

from tests.backends import POSTGRES_DSN, drop_postgres_schema, postgres_store_uri, unique_name
from tests.instances import RedisInstance

STORES = ("sqlite", "redis", "postgres")
# Not among the defaults: Redis without persistence, as Zaqar's benchmark Redis runs (and
# Redis's own default), for a like-for-like comparison with Zaqar in bench_vs_zaqar.py.
VOLATILE_REDIS = "redis-volatile"


@dataclass
class Footprint:
    """Storage used by the messages a store held at one moment."""

    messages: int
    bytes_total: int
    detail: str

    @property
    def bytes_per_message(self) -> float:
        return self.bytes_total / self.messages if self.messages else 0.0


class BenchStore:
    """One store for one benchmark run: its URI, its footprint, its clean-up."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self._redis: RedisInstance | None = None
        self._schema = unique_name("bench")
        self._baseline = 0
        if kind == "sqlite":
            self.uri = f"sqlite:///{data_dir / 'tidings.db'}"
        elif kind in ("redis", VOLATILE_REDIS):
            durable = kind == "redis"
            self._redis = RedisInstance(data_dir / "redis", appendonly=durable).start()
            self.uri = f"{self._redis.url}?prefix=bench"
        elif kind == "postgres":
            self.uri = postgres_store_uri(self._schema)
        else:
            known = ", ".join((*STORES, VOLATILE_REDIS))
            raise ValueError(f"unknown store {kind!r}; choose from {known}")

    def mark_baseline(self) -> None:
        """Remember the store's size before the measured messages arrive."""
        self._baseline = self._size()

    def footprint(self, messages: int) -> Footprint:
        total = self._size() - self._baseline
        if self.kind == "postgres":
            rows, heap = asyncio.run(self._postgres_rows())
            detail = f"{rows:,} message rows; heap {heap / rows if rows else 0:.0f} B/row"
        elif self._redis is not None:
            detail = "used_memory delta (INFO memory)"
        else:
            detail = "pages in use (page_count - freelist_count), WAL checkpointed or not"
        return Footprint(messages=messages, bytes_total=total, detail=detail)

    def _size(self) -> int:
        if self.kind == "sqlite":
            return self._sqlite_pages_in_use()
        if self._redis is not None:
            return asyncio.run(self._redis_memory())
        return asyncio.run(self._postgres_size())

    def _sqlite_pages_in_use(self) -> int:
        # File size misleads: pages freed by consumed messages are reused, not returned.
        path = self.data_dir / "tidings.db"
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    async def _redis_memory(self) -> int:
        assert self._redis is not None
        client = aioredis.Redis.from_url(self._redis.url)
        try:
            info = await client.info("memory")
            return int(info["used_memory"])
        finally:
            await client.aclose()

    async def _postgres_size(self) -> int:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            size = await connection.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind = 'r'",
                self._schema,
            )
            return int(size)
        finally:
            await connection.close()

    async def _postgres_rows(self) -> tuple[int, int]:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(f'ANALYZE "{self._schema}".messages')
            rows = await connection.fetchval(f'SELECT count(*) FROM "{self._schema}".messages')
            heap = await connection.fetchval(
                "SELECT pg_relation_size($1::regclass)", f'"{self._schema}".messages'
            )
            return int(rows), int(heap)
        finally:
            await connection.close()

    def close(self) -> None:
        if self._redis is not None:
            self._redis.stop()
        if self.kind == "postgres":
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                asyncio.run(drop_postgres_schema(self._schema))


@contextlib.contextmanager
def bench_store(kind: str, data_dir: Path) -> Iterator[BenchStore]:
    os.makedirs(data_dir, exist_ok=True)
    store = BenchStore(kind, data_dir)
    try:
        yield store
    finally:
        store.close()
