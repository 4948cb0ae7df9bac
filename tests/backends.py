"""Where the tests find Redis and PostgreSQL, and how each test gets a namespace of its own.

The machine's shared services are used with a unique key prefix (Redis) or schema
(PostgreSQL) per test, removed afterwards, so parallel runs never see each other.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
# sslmode=disable: loopback needs no TLS, and asyncpg's TLS probe of a connection still
# being made when a store closes leaves an unretrieved future error behind.
POSTGRES_DSN = os.environ.get(
    "TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
)


def unique_name(kind: str) -> str:
    return f"t{kind}{uuid.uuid4().hex[:12]}"


def redis_store_uri(prefix: str, base: str = REDIS_URL) -> str:
    return f"{base}?{urlencode({'prefix': prefix})}"


async def drop_redis_prefix(prefix: str, base: str = REDIS_URL) -> None:
    client = aioredis.Redis.from_url(base)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


def postgres_store_uri(schema: str, base: str = POSTGRES_DSN) -> str:
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}{urlencode({'schema': schema})}"


async def drop_postgres_schema(schema: str, base: str = POSTGRES_DSN) -> None:
    connection = await asyncpg.connect(base)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


STORE_KINDS = tuple(
    kind.strip()
    for kind in os.environ.get("TIDINGS_TEST_STORES", "sqlite,redis,postgres").split(",")
    if kind.strip()
)
"""The stores every server-level test runs against (narrow it for a quick local run)."""


class StoreNamespace:
    """A fresh, empty namespace in one backend, named by a store URI."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self._name = unique_name(kind[0])
        if kind == "sqlite":
            self.uri = f"sqlite:///{data_dir / 'tidings.db'}"
        elif kind == "redis":
            self.uri = redis_store_uri(self._name)
        elif kind == "postgres":
            self.uri = postgres_store_uri(self._name)
        else:
            raise ValueError(f"unknown store kind {kind!r}")

    def drop(self) -> None:
        """Remove everything the namespace holds."""
        if self.kind == "redis":
            asyncio.run(drop_redis_prefix(self._name))
        elif self.kind == "postgres":
            asyncio.run(drop_postgres_schema(self._name))
