"""Queue metadata a node keeps, so that a post or a claim is one round trip.

Each entry is the metadata with the queue's ``metadata_version`` (migration 0010) read
in the same statement. Posts prepare their batch from it and claims derive their
dead-letter policy from it; the statement that posts or claims checks the version and,
when it changed, does nothing but return the metadata in force, which the caller learns
here and prepares again. Nothing ever goes stale unnoticed, so entries need no age.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from tidings.storage.postgres.database import SINGLE, Connection, Database
from tidings.storage.sql import load_queries

M = load_queries(__package__ or "tidings.storage.postgres", "metadata.sql")

# Entries kept at most; past it the cache starts over (each queue costs a read again).
CACHE_SIZE = 10_000
# The version a node believes a queue has when it believes there is no such queue
# (the sequence starts at 1).
ABSENT = 0

_json_decode = msgspec.json.decode


class Known(NamedTuple):
    """A queue's metadata and its version, as read together; ABSENT and {}: no queue."""

    version: int
    metadata: dict[str, Any]

    @property
    def exists(self) -> bool:
        return self.version != ABSENT


NO_QUEUE = Known(ABSENT, {})


class MetadataCache:
    """This node's ``Known`` metadata by (project, queue)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._known: dict[tuple[str, str], Known] = {}

    def get(self, project: str, queue: str) -> Known | None:
        return self._known.get((project, queue))

    async def current(self, project: str, queue: str) -> Known:
        """What this node keeps, or else what is in force (one round trip)."""
        return self._known.get((project, queue)) or await self.read(project, queue)

    async def read(self, project: str, queue: str) -> Known:
        """The metadata in force, remembered."""

        async def work(connection: Connection) -> tuple[Any, Any] | None:
            row = await connection.fetchrow(M["queue_metadata_versioned"], project, queue)
            return None if row is None else (row[0], row[1])

        row = await self._db.run(work, SINGLE)
        return self.learn(project, queue, *(row or (None, None)))

    def learn(self, project: str, queue: str, version: int | None, raw: str | None) -> Known:
        """Remember what a statement found in force: a version and the metadata's JSON
        (both None: no queue). The JSON is decoded only when the version is new here."""
        key = (project, queue)
        if version is None:
            known = NO_QUEUE
        else:
            kept = self._known.get(key)
            if kept is not None and kept.version == version:
                return kept
            known = Known(int(version), {} if raw is None else dict(_json_decode(raw)))
        if len(self._known) >= CACHE_SIZE:
            self._known.clear()
        self._known[key] = known
        return known

    def forget(self, project: str, queue: str) -> None:
        self._known.pop((project, queue), None)
