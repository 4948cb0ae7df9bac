"""Renders every error as Zaqar does: JSON ``{"title", "description"}``.

Every server-side failure (5xx) is logged under the request's id, which the client has
as ``x-openstack-request-id`` (and in a 500's description), so an operator can find what
a client reports: an unexpected error with its traceback, an expected one (a 503 for a
failing store) with its chain of causes on one line.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon
import falcon.asgi
import msgspec
from msgspec import UNSET

from tidings.errors import NotAcceptable, TidingsError, Unauthorized, cause_chain
from tidings.http.middleware import REQUEST_ID_HEADER
from tidings.http.schemas import Error
from tidings.ids import new_id

log = logging.getLogger("tidings.http")


def _render(resp: falcon.asgi.Response, status: int, body: Error | None) -> None:
    resp.status = status
    resp.set_header("Vary", "Accept")
    if body is None:
        resp.data = b""
    else:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = msgspec.json.encode(body)


def reference(resp: falcon.asgi.Response) -> str:
    """The id the client sees for this request (set by ``RequestChecks``)."""
    ref = resp.get_header(REQUEST_ID_HEADER)
    if ref is None:  # failed before the middleware ran
        ref = f"req-{new_id()}"
        resp.set_header(REQUEST_ID_HEADER, ref)
    return ref


async def handle_tidings_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: TidingsError, params: Any
) -> None:
    if error.status >= 500:
        log.warning(
            "%s %s answered %d (ref %s): %s",
            req.method,
            req.path,
            error.status,
            reference(resp),
            cause_chain(error),
        )
    if isinstance(error, Unauthorized) and error.challenge:
        resp.set_header("WWW-Authenticate", error.challenge)
    if isinstance(error, NotAcceptable):
        _render(resp, error.status, None)
        return
    description = UNSET if error.description is None else error.description
    _render(resp, error.status, Error(title=error.title, description=description))


async def handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any
) -> None:
    ref = reference(resp)
    log.error(
        "unexpected error handling %s %s (ref %s)", req.method, req.path, ref, exc_info=error
    )
    _render(
        resp,
        500,
        Error(
            title="Internal server error",
            description=f"An unexpected error occurred; the server log has it as {ref}.",
        ),
    )
