"""Hands every ``/v2`` request to admission, in Zaqar's order, and sets the request id.

What is HTTP's own stays here: the 405 for a method a resource lacks, and content
negotiation (form bodies, ``Accept``). Every rule about the caller is admission's.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import falcon.asgi

from tidings.admission import identity
from tidings.admission.auth import Authenticator
from tidings.admission.gate import admit
from tidings.errors import HeaderError, NotAcceptable
from tidings.ids import new_id
from tidings.ops.context import Services

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
REQUEST_ID_HEADER = "x-openstack-request-id"
# oslo.middleware's form: a client's id is adopted only when it has exactly this shape,
# so nothing else it sends reaches a response header or a log line.
CLIENT_REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

log = logging.getLogger("tidings.http")


def request_id(req: falcon.asgi.Request) -> str:
    """The client's ``X-OpenStack-Request-ID`` when well formed (logged), else a new id."""
    offered = req.get_header(REQUEST_ID_HEADER)
    if offered is not None and CLIENT_REQUEST_ID.fullmatch(offered):
        # Logged so that an operator can follow the client's id to this request (the
        # path quoted: a decoded path may hold line breaks).
        log.info("%s %r: client request id %s", req.method, req.path, offered)
        return offered
    return f"req-{new_id()}"


class RequestChecks:
    """Admits the caller after routing, so unknown paths and methods stay 404/405."""

    def __init__(self, services: Services, authenticator: Authenticator) -> None:
        self._svc = services
        self._authenticator = authenticator

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.set_header(REQUEST_ID_HEADER, request_id(req))

    async def process_resource(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        params: dict[str, Any],
    ) -> None:
        if resource is None or not getattr(resource, "needs_caller", True):
            return
        settings = self._svc.settings
        # First, as in Zaqar; before the 405 too, so a signed probe of any method is a 404.
        signed_project = identity.check_signature(
            req.headers,
            method=req.method,
            path=req.path,
            secret_key=settings.signed_url.secret_key,
            now=self._svc.clock(),
        )
        if not hasattr(resource, f"on_{req.method.lower()}"):
            return  # falcon answers 405
        content_type = req.content_type or ""
        if content_type.startswith(FORM_MEDIA_TYPE) and (req.content_length or 0) > 0:
            raise HeaderError(
                "Endpoint does not accept `application/x-www-form-urlencoded` content; "
                "currently supported media type is `application/json`; specify proper "
                'client-side media type with the "Content-Type" header.',
                title="Invalid Content-Type",
            )
        if req.get_header("Accept") is not None and not req.client_accepts_json:
            raise NotAcceptable()
        req.context.caller = await admit(
            settings,
            self._authenticator,
            resource.action(req),
            req.headers,
            req.params,
            signed_project=signed_project,
            collection=getattr(resource, "collection", "queues"),
        )
