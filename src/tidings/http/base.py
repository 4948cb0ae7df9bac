"""What every resource shares: its actions, the caller, bodies, JSON responses, next links."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlencode

import falcon
import falcon.asgi
import msgspec

from tidings import views
from tidings.admission import bodies
from tidings.admission.actions import Action
from tidings.errors import InvalidBody, UnsupportedMediaType
from tidings.http import schemas as wire
from tidings.model import Message
from tidings.ops.context import Caller, Services, in_collection

_encode = msgspec.json.Encoder().encode
V = TypeVar("V")


def methods(**table: V) -> Mapping[str, V]:
    """A read-only table by HTTP method, e.g. ``methods(GET=Action.QUEUE_GET)``."""
    return MappingProxyType(table)


class Resource:
    """Base of the resources; ``collection`` is ``queues`` or ``topics``.

    ``actions`` names the API action of each HTTP method (what admission and policy
    judge); ``media_types`` the one Content-Type a method's body must have, if any.
    """

    actions: ClassVar[Mapping[str, Action]] = {}
    media_types: ClassVar[Mapping[str, str]] = {}

    def __init__(self, services: Services, collection: str = "queues") -> None:
        self.svc = services
        self.collection = collection

    def caller(self, req: falcon.asgi.Request) -> Caller:
        """The caller as storage sees it for this resource's collection."""
        return in_collection(caller(req), self.collection)

    def action(self, req: falcon.asgi.Request) -> Action:
        return self.actions[req.method]

    async def raw_body(self, req: falcon.asgi.Request) -> tuple[bytes, int]:
        """The body's bytes (at most the action's read limit, plus one) and its size."""
        return await read_body(req, bodies.read_limit(self.svc, self.action(req)))

    async def document(self, req: falcon.asgi.Request) -> Any:
        """The decoded body (None when absent), after the action's size and media rules."""
        action = self.action(req)
        raw, size = await read_body(req, bodies.read_limit(self.svc, action))
        bodies.check_size(self.svc, action, size)
        self._check_media_type(req)
        return bodies.decode(raw)

    def _check_media_type(self, req: falcon.asgi.Request) -> None:
        wanted = self.media_types.get(req.method)
        if wanted is None:
            return
        if (req.content_type or "").strip() != wanted:
            raise UnsupportedMediaType(
                f"Accepted media type for {req.method}: "
                f"{{'Accept-{req.method.title()}': '{wanted}'}}."
            )

    def message_view(self, message: Message, queue: str, now: float) -> dict[str, Any]:
        return views.message(
            message,
            queue,
            now,
            with_checksum=self.svc.settings.enable_checksum,
            collection=self.collection,
        )


def caller(req: falcon.asgi.Request) -> Caller:
    found: Caller = req.context.caller
    return found


async def read_body(req: falcon.asgi.Request, limit: int) -> tuple[bytes, int]:
    """The body and its size, reading at most ``limit + 1`` bytes of it.

    The size is the Content-Length when given (Zaqar compares that against limits),
    else what was read; either way an oversize body is never held in memory whole.
    """
    declared = req.content_length
    if declared is not None:
        if declared > limit:
            return b"", declared
        # Falcon's stream stops at the declared length: read it in one go.
        body = await req.stream.readall()
        if len(body) < declared:
            # The client went away or was timed out mid-body: never act on part of it.
            raise InvalidBody(f"The request body ended after {len(body)} of {declared} bytes.")
        return body, declared
    chunks: list[bytes] = []
    received = 0
    async for chunk in req.stream:
        chunks.append(chunk)
        received += len(chunk)
        if received > limit:
            break
    return b"".join(chunks), received


def send_json(resp: falcon.asgi.Response, body: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(body)


def next_link(req: falcon.asgi.Request, marker: str, **extra: str) -> list[wire.Link]:
    """The single ``next`` link: the caller's parameters with the new marker."""
    query = {k: v for k, v in req.params.items() if k != "marker"}
    query.update(extra)
    query["marker"] = marker
    return [wire.Link(rel="next", href=f"{req.path}?{urlencode(query, doseq=True)}")]
