"""What every operation receives: the services it may use and who is calling."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import msgspec

from tidings.config import Settings
from tidings.errors import NotFound, ServiceUnavailable, StorageError
from tidings.namespace import TOPIC_NAMESPACE as TOPIC_NAMESPACE
from tidings.namespace import split_namespace as split_namespace
from tidings.storage.base import Storage
from tidings.storage.catalog import CatalogStore

if TYPE_CHECKING:
    from tidings.notify.push import PushRegistry

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    storage: Storage
    clock: Callable[[], float] = time.time
    # Tells this process's delivery dispatcher that pushes are owed (None: no dispatcher).
    wake_dispatcher: Callable[[], None] | None = None
    # This process's WebSocket connections that hold push subscriptions (None: no push).
    push: PushRegistry | None = None
    # Pooled mode: the management store's catalog of pools, flavors and placements
    # (None when pooling is off).
    catalog: CatalogStore | None = None


class Caller(msgspec.Struct, frozen=True):
    """The authenticated project and the client's id (used by the echo filter)."""

    # A Struct: built once or twice per request, ~15 times cheaper than a frozen
    # dataclass.
    project: str
    client_id: str
    roles: frozenset[str] = frozenset()
    # Set when the auth strategy knows the user (keystone, tokens); policy may use it.
    user_id: str | None = None


def in_collection(caller: Caller, collection: str) -> Caller:
    """The caller as seen by storage for ``queues`` or ``topics``."""
    if collection == "topics":
        return msgspec.structs.replace(caller, project=caller.project + TOPIC_NAMESPACE)
    return caller


def noun(caller: Caller) -> str:
    """ "queue" or "topic", for messages that name what the caller works on."""
    return "topic" if caller.project.endswith(TOPIC_NAMESPACE) else "queue"


def client_project(caller: Caller) -> str:
    """The project as the client named it (without the topics' namespace)."""
    return split_namespace(caller.project)[0]


def source_not_found(caller: Caller, name: str) -> NotFound:
    return NotFound(
        f"{noun(caller).title()} {name} does not exist for project {client_project(caller)}"
    )


def unavailable_as(
    what_failed: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Turn a backend failure inside the operation into a 503 saying what failed."""

    def decorate(operation: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(operation)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await operation(*args, **kwargs)
            except StorageError as exc:
                raise ServiceUnavailable(
                    f"{what_failed} Please try again in a few seconds."
                ) from exc

        return run

    return decorate
