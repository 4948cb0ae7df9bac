"""Renders every error as Zaqar does: JSON ``{"title", "description"}``."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import falcon
import falcon.asgi
import msgspec

from tidings.errors import NotAcceptable, TidingsError

log = logging.getLogger("tidings.http")


def _render(resp: falcon.asgi.Response, status: int, body: dict[str, str] | None) -> None:
    resp.status = status
    resp.set_header("Vary", "Accept")
    if body is None:
        resp.data = b""
    else:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = msgspec.json.encode(body)


async def handle_tidings_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: TidingsError, params: Any
) -> None:
    if isinstance(error, NotAcceptable):
        _render(resp, error.status, None)
        return
    body = {"title": error.title}
    if error.description is not None:
        body["description"] = error.description
    _render(resp, error.status, body)


async def handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any
) -> None:
    ref = str(uuid.uuid4())
    log.exception("unexpected error handling %s %s (ref %s)", req.method, req.path, ref)
    _render(
        resp,
        500,
        {
            "title": "Internal server error",
            "description": f"An unexpected error occurred; the server log has it as {ref}.",
        },
    )
