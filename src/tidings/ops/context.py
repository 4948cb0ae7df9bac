"""What every operation receives: the services it may use and who is calling."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import ParamSpec, TypeVar

from tidings.config import Settings
from tidings.errors import ServiceUnavailable, StorageError
from tidings.storage.base import Storage

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    storage: Storage
    clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated project and the client's id (used by the echo filter)."""

    project: str
    client_id: str
    roles: frozenset[str] = field(default_factory=frozenset)


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
