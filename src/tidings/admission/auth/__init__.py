"""Who is calling: one ``Authenticator`` per ``auth_strategy``.

A strategy turns a request's headers (a plain mapping, lower-case names, whatever the
transport) into an ``Identity``, or refuses with a ``TidingsError`` (401, 403, 503).
Admission builds the ``Caller`` from it; policy then decides what the caller may do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Identity:
    """What a strategy established about the caller."""

    # The project the caller acts in. ``noauth`` takes it from X-Project-ID; the others
    # from the credential (an X-Project-ID naming another project is a 403).
    project: str
    user_id: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    # Whether the strategy vouches for the identity (keystone, tokens); noauth does not.
    authenticated: bool = False
    # When the credential stops being valid (epoch seconds; None: it does not expire).
    # A WebSocket connection authenticated with it closes then (4003).
    expires_at: float | None = None


class Authenticator(Protocol):
    """One auth strategy. Implementations never block the event loop."""

    async def authenticate(self, headers: Headers) -> Identity:
        """The caller's identity, or raise (401 without valid credentials)."""
        ...

    async def close(self) -> None:
        """Release sessions, watchers and caches."""
        ...
