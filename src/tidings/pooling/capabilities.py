"""What a pool's store guarantees, named as Zaqar's flavor capabilities.

Zaqar took a flavor's capabilities from the client (then ignored them) or from its first
pool; here they follow from the drivers themselves: every store is FIFO per queue, has
claims and deletes messages by age (AOD); SQLite and PostgreSQL acknowledge a write once
it is on disk (DURABILITY); Redis trades that for throughput (HIGH_THROUGHPUT).
"""

from __future__ import annotations

from collections.abc import Iterable

FIFO = "FIFO"
CLAIMS = "CLAIMS"
DURABILITY = "DURABILITY"
AOD = "AOD"
HIGH_THROUGHPUT = "HIGH_THROUGHPUT"

# The order capabilities are listed in (Zaqar's, as its Redis pools show them).
ORDER = (FIFO, CLAIMS, DURABILITY, AOD, HIGH_THROUGHPUT)

_BY_SCHEME: dict[str, frozenset[str]] = {
    "sqlite": frozenset({FIFO, CLAIMS, DURABILITY, AOD}),
    "postgresql": frozenset({FIFO, CLAIMS, DURABILITY, AOD}),
    "postgres": frozenset({FIFO, CLAIMS, DURABILITY, AOD}),
    "redis": frozenset({FIFO, CLAIMS, AOD, HIGH_THROUGHPUT}),
    "rediss": frozenset({FIFO, CLAIMS, AOD, HIGH_THROUGHPUT}),
    "redis+cluster": frozenset({FIFO, CLAIMS, AOD, HIGH_THROUGHPUT}),
    "rediss+cluster": frozenset({FIFO, CLAIMS, AOD, HIGH_THROUGHPUT}),
}


def _of(uri: str) -> frozenset[str]:
    return _BY_SCHEME.get(uri.partition("://")[0].lower(), frozenset())


def capabilities(uri: str) -> list[str]:
    """The capabilities of the store ``uri`` names (none for a scheme we lack)."""
    found = _of(uri)
    return [name for name in ORDER if name in found]


def shared(uris: Iterable[str]) -> list[str]:
    """What every one of the stores guarantees: a flavor's capabilities (none without pools).

    A flavor may mix drivers; a queue placed on any of its pools gets only what all of
    them offer, so that is what the flavor promises.
    """
    common: frozenset[str] | None = None
    for uri in uris:
        common = _of(uri) if common is None else common & _of(uri)
    return [name for name in ORDER if common and name in common]
