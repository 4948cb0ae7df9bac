"""Random UUID4 ids, formatted without building ``uuid.UUID`` objects.

Random bytes are drawn in bulk into a per-thread pool: one ``getrandom()`` per 256 ids
instead of one per request (each of which releases the GIL), and no lock.
"""

from __future__ import annotations

import os
import threading
import uuid

_POOL_SIZE = 16 * 256


class _Pool(threading.local):
    data = b""
    offset = 0


_pool = _Pool()


def _random_bytes(count: int) -> bytes:
    pool = _pool
    start = pool.offset
    end = start + count
    if end > len(pool.data):
        pool.data = os.urandom(max(_POOL_SIZE, count))
        start, end = 0, count
    pool.offset = end
    return pool.data[start:end]


def _forget_pool() -> None:
    # A forked child must never hand out the ids its parent's pool would.
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_pool)


def new_ids(count: int) -> list[str]:
    """``count`` fresh UUID4 strings, as ``str(uuid.uuid4())`` spells them."""
    raw = bytearray(_random_bytes(16 * count))
    for start in range(0, 16 * count, 16):
        raw[start + 6] = raw[start + 6] & 0x0F | 0x40  # version 4
        raw[start + 8] = raw[start + 8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def new_id() -> str:
    return new_ids(1)[0]


def is_canonical(value: str) -> bool:
    """True for a UUID in the lower-case hyphenated form these ids are handed out in."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
