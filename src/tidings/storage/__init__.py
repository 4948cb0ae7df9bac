"""Storage drivers, chosen by the message store URI."""

from __future__ import annotations

from tidings.config import Settings
from tidings.storage.base import Storage


class UnsupportedStoreURI(ValueError):
    """The message store URI names a backend this build does not have."""


def create_storage(settings: Settings) -> Storage:
    uri = settings.drivers.message_store
    scheme = uri.partition("://")[0].lower()
    if scheme == "sqlite":
        from tidings.storage.sqlite.driver import SQLiteStorage

        return SQLiteStorage.from_uri(uri, busy_timeout=settings.storage.busy_timeout)
    raise UnsupportedStoreURI(f"unsupported message store {uri!r}: use sqlite:///path/to/file.db")
