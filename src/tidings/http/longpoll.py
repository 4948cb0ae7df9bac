"""Long polling over HTTP: a waiting operation is dropped as soon as its client leaves.

The rule itself is the operations' (``ops.waiting``); this only races the operation
against the connection. Once a request's body has been read, the ASGI ``receive`` channel
yields nothing more until the client disconnects (``http.disconnect``): Falcon's own
server-sent events watch it the same way. Falcon keeps ``receive`` on the request
(``Request._receive``, not public API; tests/api/test_long_polling.py fails if it moves).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import falcon.asgi

T = TypeVar("T")

Receive = Callable[[], Awaitable[Mapping[str, Any]]]


class ClientGone(Exception):
    """The client disconnected while its request waited; nobody is left to answer."""


async def _disconnected(receive: Receive) -> None:
    while True:
        event = await receive()
        if event.get("type") == "http.disconnect":
            return
        # The rest of a body nobody read: dropped (an ASGI server sends it once).


async def unless_client_leaves(
    req: falcon.asgi.Request, operation: Awaitable[T], wait: float | None
) -> T:
    """``operation``'s result. With a ``wait`` it may take that long, so it is raced
    against the connection: cancelled, and ``ClientGone`` raised, if the client leaves
    first. Only for operations whose request body has been read (or has none)."""
    if wait is None:
        return await operation
    return await race_client(req._receive, operation)


async def race_client(receive: Receive, operation: Awaitable[T]) -> T:
    """``operation``'s result, unless the client (its ASGI ``receive`` channel, the body
    read already) disconnects first: then it is cancelled and ``ClientGone`` raised."""
    work = asyncio.ensure_future(operation)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        raise ClientGone
    finally:
        for task in (work, watch):
            if not task.done():
                task.cancel()
        # Both are done (or cancelled) before the answer is sent: the ASGI server's
        # receive() must not be awaited once the response has begun.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(work, watch, return_exceptions=True)


async def answer_nobody(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: ClientGone, params: Any
) -> None:
    """What a request whose client left answers (its error handler): nothing reaches
    anyone (the server drops it), so the cheapest response."""
    resp.status = falcon.HTTP_204
