"""Where the tests find Redis and PostgreSQL, and how each test gets a namespace of its own.

The machine's shared services are used with a unique key prefix (Redis) or schema
(PostgreSQL) per test, removed afterwards, so parallel runs never see each other.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlencode

import asyncpg
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


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
    return f"{base}?{urlencode({'schema': schema})}"


async def drop_postgres_schema(schema: str, base: str = POSTGRES_DSN) -> None:
    connection = await asyncpg.connect(base)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
