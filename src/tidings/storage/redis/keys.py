"""Key names: one hash tag per queue and per project catalog, collision-free.

Zaqar's ``<project>.<queue>`` keys let project ``a.b`` + queue ``c`` collide with
project ``a`` + queue ``b.c``. Here a queue is named by an injective encoding, its
*slot id* ``<byte length of project>:<project>:<queue>`` (queue names never contain
``:``), and its hash tag is a digest of that encoding. The encoding itself follows the
tag in every key, so distinct queues never share a key even if two digests collided; a
shared digest would only put two queues in one slot. The digest is hex, so braces in a
project name cannot end the tag early.

The subscriptions of a source and the notifications owed to them live under the hash
tag of the queue of the same name, so posting to the queue can owe them atomically.

The pooled-mode catalog (pools, flavors, placements: ``catalog.py``) shares one hash
tag, ``{<prefix>:catalog}``, so its scripts check and change it in one step.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

# Order matters: lua/queue_lib.lua names them by position, and the quarantine stays last.
QUEUE_KINDS = (
    "seq", "order", "records", "expiry", "claims", "claim-expiry", "outbox", "claimed",
    "ready", "delayed", "delay-ends", "layout", "meta-token", "quarantine",
)  # fmt: skip
# Order matters: lua/source_lib.lua expects these as the last keys of a script.
SOURCE_KINDS = (
    "subs", "sub-order", "sub-expiry", "subscribers",
    "notify-seq", "notify", "notify-due", "failures", "bodies", "body-refs",
)  # fmt: skip
# The pooled-mode catalog's pool keys (catalog.py); order matters: the lua/pool_*.lua
# and lua/placement_*.lua scripts name them by position.
POOL_KINDS = ("pools", "pool-names", "pool-uris", "pool-flavors", "pool-queues")
# Queues whose key lists one KeySpace keeps built (a post or claim needs them every time;
# building them costs a digest and a dozen strings). Bounded: forgotten wholesale when full.
KEY_CACHE_SIZE = 4096
_META_TOKEN = QUEUE_KINDS.index("meta-token")


K = TypeVar("K", str, bytes)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _length_prefixed(project: str) -> str:
    return f"{len(project.encode())}:{project}"


def slot_id(project: str, name: str) -> str:
    """The injective encoding of (project, queue or source) that names its keys."""
    return f"{_length_prefixed(project)}:{name}"


def split_slot_id(slot: str) -> tuple[str, str]:
    """(project, name) back from ``slot_id``; ValueError when it is not one."""
    length, sep, rest = slot.partition(":")
    if not sep or not length.isdigit():
        raise ValueError(f"not a slot id: {slot!r}")
    raw, size = rest.encode(), int(length)
    if raw[size : size + 1] != b":":
        raise ValueError(f"not a slot id: {slot!r}")
    return raw[:size].decode(), raw[size + 1 :].decode()


class KeySpace:
    """Every key the driver uses, under ``<prefix>:``."""

    def __init__(self, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"invalid Redis key prefix {prefix!r}: must be non-empty, no braces")
        self.prefix = prefix
        # Projects that have a queue: where garbage collection starts looking. A project
        # leaves it with its last queue.
        self.projects = f"{prefix}:projects"
        # Slot ids of sources that have subscriptions or owe notifications (garbage
        # collection again); a source leaves it when it has neither.
        self.sources = f"{prefix}:sources"
        # Projects owing notifications, scored by (at most) their earliest due time:
        # where OutboxStore.take finds due work without scanning the keyspace. Under
        # one hash tag with ``outbox_sources``, so one script updates both.
        self.outbox_projects = f"{prefix}:{{outbox}}:projects"
        self.marker = f"{prefix}:marker"
        self._queue_keys: dict[tuple[str, str], list[str]] = {}
        self._post_keys: dict[tuple[str, str], list[bytes]] = {}

    def outbox_sources(self, project: str) -> str:
        """Slot ids of the project's sources owing notifications, scored likewise."""
        return f"{self.prefix}:{{outbox}}:sources:{_length_prefixed(project)}"

    def _slot_base(self, slot: str) -> str:
        return f"{self.prefix}:q:{{{_digest(slot)}}}:{slot}"

    def queue(self, project: str, name: str) -> list[str]:
        """The keys of one queue (``QUEUE_KINDS``), in the order the Lua prelude expects.

        Shared between calls: callers must not change the list.
        """
        found = self._queue_keys.get((project, name))
        if found is None:
            base = self._slot_base(slot_id(project, name))
            found = [f"{base}:{kind}" for kind in QUEUE_KINDS]
            _remember(self._queue_keys, (project, name), found)
        return found

    def queue_and_source(self, project: str, name: str) -> list[bytes]:
        """``queue`` then ``source`` (what post.lua takes), encoded once: the client
        encodes every key of every call, and a post names 24. Shared, like ``queue``."""
        found = self._post_keys.get((project, name))
        if found is None:
            found = [k.encode() for k in (*self.queue(project, name), *self.source(project, name))]
            _remember(self._post_keys, (project, name), found)
        return found

    def meta_token(self, project: str, name: str) -> str:
        """The queue's metadata token (see ``lua/queue_lib.lua``), in the queue's slot."""
        return self.queue(project, name)[_META_TOKEN]

    def source(self, project: str, name: str) -> list[str]:
        """The keys of a source's subscriptions and outbox, in the queue's slot."""
        return self.source_of(slot_id(project, name))

    def source_of(self, slot: str) -> list[str]:
        base = self._slot_base(slot)
        return [f"{base}:{kind}" for kind in SOURCE_KINDS]

    def feed_channel(self, project: str, name: str) -> str:
        """The queue's change-feed channel (sharded pub/sub), in the queue's slot.

        lua/queue_lib.lua derives it from the ``seq`` key: the keys' common base, then
        ``feed``.
        """
        return f"{self._slot_base(slot_id(project, name))}:feed"

    def relay_channel(self, node: str) -> str:
        """The channel on which ``node`` hears what other nodes relay to it."""
        return f"{self.prefix}:relay:{{{_digest(node)}}}:{node}"

    def _pooling_base(self) -> str:
        # One hash tag for the whole pooled-mode catalog (pools, flavors, placements),
        # so one script checks and changes any of it atomically, on a cluster too.
        return f"{self.prefix}:{{{self.prefix}:catalog}}"

    def pools(self) -> list[str]:
        """The pools' keys (``POOL_KINDS``), in the order the pool scripts expect."""
        base = self._pooling_base()
        return [f"{base}:{kind}" for kind in POOL_KINDS]

    def flavors(self, project: str) -> str:
        """The project's flavor names (sorted set, lexical), in the catalog's slot."""
        return f"{self._pooling_base()}:flavors:{_length_prefixed(project)}"

    def placements(self, project: str) -> str:
        """The project's placements (hash queue -> pool), in the catalog's slot."""
        return f"{self._pooling_base()}:placements:{_length_prefixed(project)}"

    def catalog(self, project: str) -> list[str]:
        """The project's queue names (sorted set) and metadata (hash)."""
        encoded = _length_prefixed(project)
        base = f"{self.prefix}:p:{{{_digest(encoded)}}}:{encoded}"
        return [f"{base}:names", f"{base}:metadata"]


def _remember(cache: dict[tuple[str, str], list[K]], key: tuple[str, str], keys: list[K]) -> None:
    if len(cache) >= KEY_CACHE_SIZE:
        cache.clear()
    cache[key] = keys
