"""Health's message volume on Redis: live messages across the store's queues.

Each queue is counted from its expiry and claimed indexes (``ZCOUNT`` past ``now``, as
the stats script counts it), so the figures are exact for the queues counted and cost
O(log n) per queue, never a walk of messages. At most ``scan_budget`` queues are
counted, found through the set of projects with queues and each project's catalog; the
volume says when there were more. The per-queue counts go in pipelines of one chunk, so
on a cluster each reaches the queues' own nodes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from tidings.storage.base import MessageVolume
from tidings.storage.redis.connection import Backend
from tidings.storage.redis.keys import QUEUE_KINDS

EXPIRY = QUEUE_KINDS.index("expiry")
CLAIMED = QUEUE_KINDS.index("claimed")
# Queues counted per pipeline, and project-set chunks read at most per count.
CHUNK = 200
MAX_PROJECT_SCANS = 100


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _queue_names(backend: Backend, budget: int) -> tuple[list[tuple[str, str]], bool]:
    """Up to ``budget`` (project, queue) pairs, and whether that was all of them."""
    client = backend.client
    found: list[tuple[str, str]] = []
    cursor: Any = 0
    for _ in range(MAX_PROJECT_SCANS):
        cursor, chunk = await backend.call(
            partial(client.sscan, backend.keys.projects, cursor, count=CHUNK)
        )
        for member in chunk:
            project, left = _text(member), budget - len(found)
            # One more than fits tells whether the budget cut the count short.
            names = await backend.call(
                partial(client.zrange, backend.keys.catalog(project)[0], 0, left)
            )
            found.extend((project, _text(name)) for name in names[:left])
            if len(names) > left:
                return found, False
        if int(cursor) == 0:
            return found, True
    return found, False


async def _counts(backend: Backend, queues: list[tuple[str, str]], now: float) -> list[Any]:
    """Live and claimed counts of each queue, alternating, in one pipeline."""
    pipe, since = backend.client.pipeline(transaction=False), f"({now!r}"
    for project, name in queues:
        keys = backend.keys.queue(project, name)
        pipe.zcount(keys[EXPIRY], since, "+inf")
        pipe.zcount(keys[CLAIMED], since, "+inf")
    answers: list[Any] = await pipe.execute()
    return answers


async def message_volume(backend: Backend, now: float) -> MessageVolume:
    queues, complete = await _queue_names(backend, backend.scan_budget)
    total = claimed = 0
    for start in range(0, len(queues), CHUNK):
        answers = await backend.call(partial(_counts, backend, queues[start : start + CHUNK], now))
        total += sum(int(n) for n in answers[0::2])
        claimed += sum(int(n) for n in answers[1::2])
    return MessageVolume(total=total, claimed=claimed, complete=complete)
