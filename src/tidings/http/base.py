"""What every resource shares: the services, the caller, JSON responses, next links."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon
import falcon.asgi
import msgspec

from tidings import views
from tidings.model import Message
from tidings.ops.context import Caller, Services, in_collection

_encode = msgspec.json.Encoder().encode


class Resource:
    """Base of the resources; ``collection`` is ``queues`` or ``topics``."""

    def __init__(self, services: Services, collection: str = "queues") -> None:
        self.svc = services
        self.collection = collection

    def caller(self, req: falcon.asgi.Request) -> Caller:
        """The caller as storage sees it for this resource's collection."""
        return in_collection(caller(req), self.collection)

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


def send_json(resp: falcon.asgi.Response, body: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(body)


def next_link(req: falcon.asgi.Request, marker: str, **extra: str) -> list[dict[str, str]]:
    """The single ``next`` link: the caller's parameters with the new marker."""
    query = {k: v for k, v in req.params.items() if k != "marker"}
    query.update(extra)
    query["marker"] = marker
    return [{"rel": "next", "href": f"{req.path}?{urlencode(query, doseq=True)}"}]
