"""Which actions this server offers, and who may run them."""

from __future__ import annotations

from tidings.admission.actions import Action
from tidings.config import Settings
from tidings.errors import Forbidden, NotFound
from tidings.ops.context import Caller

# Offered only with ``admin_mode``, and then only to callers with the admin role.
ADMIN_ACTIONS = frozenset({Action.HEALTH})
ADMIN_ROLE = "admin"


def offered(action: Action, settings: Settings) -> bool:
    """Whether the action exists at all here (transports leave the others unrouted)."""
    return action not in ADMIN_ACTIONS or settings.admin_mode


def authorize(action: Action, caller: Caller, settings: Settings) -> None:
    """Refuse an action the caller may not run."""
    if action in ADMIN_ACTIONS:
        if not settings.admin_mode:
            raise NotFound()
        if ADMIN_ROLE not in caller.roles:
            raise Forbidden()
