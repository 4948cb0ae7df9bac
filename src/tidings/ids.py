"""Random UUID4 ids without a system call each: random bytes are drawn in bulk."""

from __future__ import annotations

import os
import threading
import uuid

_POOL_SIZE = 16 * 256
_lock = threading.Lock()
_pool = b""
_offset = 0


def _random_bytes(count: int) -> bytes:
    global _pool, _offset
    with _lock:
        if _offset + count > len(_pool):
            _pool = os.urandom(max(_POOL_SIZE, count))
            _offset = 0
        chunk = _pool[_offset : _offset + count]
        _offset += count
    return chunk


def _forget_pool() -> None:
    # A forked child must never hand out the ids its parent's pool would.
    global _pool, _offset
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def new_ids(count: int) -> list[str]:
    """``count`` fresh UUID4 strings."""
    raw = _random_bytes(16 * count)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


def new_id() -> str:
    return new_ids(1)[0]


def is_canonical(value: str) -> bool:
    """True for a UUID in the lower-case hyphenated form these ids are handed out in."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
