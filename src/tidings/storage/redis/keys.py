"""Key names: one hash tag per queue and per project catalog, collision-free.

Zaqar's ``<project>.<queue>`` keys let project ``a.b`` + queue ``c`` collide with
project ``a`` + queue ``b.c``. Here a queue is named by an injective encoding,
``<byte length of project>:<project>:<queue>`` (queue names never contain ``:``), and
its hash tag is a digest of that encoding. The encoding itself follows the tag in every
key, so distinct queues never share a key even if two digests collided; a shared
digest would only put two queues in one slot. The digest is hex, so braces in a
project name cannot end the tag early.
"""

from __future__ import annotations

import hashlib

QUEUE_KINDS = ("seq", "order", "records", "expiry", "claims", "claim-expiry", "outbox")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _length_prefixed(project: str) -> str:
    return f"{len(project.encode())}:{project}"


class KeySpace:
    """Every key the driver uses, under ``<prefix>:``."""

    def __init__(self, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"invalid Redis key prefix {prefix!r}: must be non-empty, no braces")
        self.prefix = prefix
        # Projects that ever had a queue: where garbage collection starts looking.
        self.projects = f"{prefix}:projects"
        self.marker = f"{prefix}:marker"

    def queue(self, project: str, name: str) -> list[str]:
        """The seven keys of one queue, in the order the Lua prelude expects."""
        encoded = f"{_length_prefixed(project)}:{name}"
        base = f"{self.prefix}:q:{{{_digest(encoded)}}}:{encoded}"
        return [f"{base}:{kind}" for kind in QUEUE_KINDS]

    def catalog(self, project: str) -> list[str]:
        """The project's queue names (sorted set) and metadata (hash)."""
        encoded = _length_prefixed(project)
        base = f"{self.prefix}:p:{{{_digest(encoded)}}}:{encoded}"
        return [f"{base}:names", f"{base}:metadata"]
