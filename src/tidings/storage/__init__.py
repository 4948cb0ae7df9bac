"""Storage drivers, chosen by the message store URI."""

from __future__ import annotations

from tidings.config import Settings, StorageSettings
from tidings.storage.base import Storage

REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+cluster", "rediss+cluster"})
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


class UnsupportedStoreURI(ValueError):
    """The message store URI names a backend this build does not have."""


def create_storage(settings: Settings) -> Storage:
    return storage_for_uri(settings.drivers.message_store, settings.storage)


def driver_name(uri: str) -> str | None:
    """The driver ``uri``'s scheme names: ``sqlite``, ``redis`` or ``postgres``; None for
    none of them."""
    scheme = uri.partition("://")[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    return None


def storage_for_uri(uri: str, settings: StorageSettings) -> Storage:
    """An unopened store of the driver that ``uri``'s scheme names (pools use it too)."""
    driver = driver_name(uri)
    if driver == "sqlite":
        from tidings.storage.sqlite.driver import SQLiteStorage

        return SQLiteStorage.from_uri(uri, settings)
    if driver == "redis":
        from tidings.storage.redis.driver import RedisStorage

        return RedisStorage.from_uri(uri, settings)
    if driver == "postgres":
        from tidings.storage.postgres.driver import PostgresStorage

        return PostgresStorage.from_uri(uri, settings)
    raise UnsupportedStoreURI(
        f"unsupported message store {uri!r}: use sqlite:///path/to/file.db, "
        "redis://host:port/db, redis+cluster://host:port,host:port or "
        "postgresql://user@host:port/database"
    )
