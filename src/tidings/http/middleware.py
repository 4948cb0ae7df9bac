"""Hands every ``/v2`` request to admission, in Zaqar's order, and sets the request id.

What is HTTP's own stays here: the 405 for a method a resource lacks, and content
negotiation (form bodies, ``Accept``). Every rule about the caller is admission's.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import falcon.asgi

from tidings.admission import identity
from tidings.admission.auth import Authenticator
from tidings.admission.gate import admit
from tidings.errors import HeaderError, NotAcceptable
from tidings.ids import new_id
from tidings.observe import requests as observed
from tidings.ops.context import Services

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
REQUEST_ID_HEADER = "x-openstack-request-id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()
_PROJECT_KEY = b"x-project-id"
# oslo.middleware's form: a client's id is adopted only when it has exactly this shape,
# so nothing else it sends reaches a response header or a log line.
CLIENT_REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

log = logging.getLogger("tidings.http")


def request_id(req: falcon.asgi.Request) -> str:
    """The client's ``X-OpenStack-Request-ID`` when well formed (logged), else a new id."""
    # Read directly: get_header raises and catches KeyError when, as usual, it is absent.
    raw = req._asgi_headers.get(_REQUEST_ID_KEY)
    offered = None if raw is None else raw.decode("latin1")
    if offered is not None and CLIENT_REQUEST_ID.fullmatch(offered):
        # Logged so that an operator can follow the client's id to this request (the
        # path quoted: a decoded path may hold line breaks).
        log.info("%s %r: client request id %s", req.method, req.path, offered)
        return offered
    return f"req-{new_id()}"


class RequestHeaders(Mapping[str, str]):
    """The request's headers as admission reads them, by lower-case name.

    Falcon's ``req.headers`` decodes every header into a new dict, and ``get_header``
    raises and catches KeyError for each absent one (most requests lack the signature
    and role headers); this reads the same merged byte headers falcon keeps and decodes
    only what is asked for.
    """

    __slots__ = ("_raw", "_req")

    def __init__(self, req: falcon.asgi.Request) -> None:
        self._req = req
        # Falcon's parsed request headers (lower-case byte names, repeats joined as
        # req.headers has them), set in Request.__init__.
        self._raw: dict[bytes, bytes] = req._asgi_headers

    def get(self, name: str, default: Any = None) -> Any:
        value = self._raw.get(_header_key(name))
        return default if value is None else value.decode("latin1")

    def __getitem__(self, name: str) -> str:
        value = self._raw.get(_header_key(name))
        if value is None:
            raise KeyError(name)
        return value.decode("latin1")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _header_key(name) in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._req.headers)

    def __len__(self) -> int:
        return len(self._raw)


_HEADER_KEYS: dict[str, bytes] = {}


def _header_key(name: str) -> bytes:
    key = _HEADER_KEYS.get(name)
    if key is None:
        key = name.lower().encode("latin1")
        if len(_HEADER_KEYS) < 64:  # the names admission asks for, not clients' names
            _HEADER_KEYS[name] = key
    return key


class _Shape:
    """What the checks need to know of a resource, read once per resource."""

    __slots__ = ("collection", "methods", "needs_caller")

    def __init__(self, resource: Any) -> None:
        self.needs_caller: bool = getattr(resource, "needs_caller", True)
        self.collection: str = getattr(resource, "collection", "queues")
        # The HTTP methods it answers (others get falcon's 405).
        self.methods = frozenset(
            name[3:].upper() for name in dir(resource) if name.startswith("on_")
        )


class RequestChecks:
    """Admits the caller after routing, so unknown paths and methods stay 404/405."""

    def __init__(self, services: Services, authenticator: Authenticator) -> None:
        self._svc = services
        self._authenticator = authenticator
        # Routed resources live as long as the app: a handful of entries.
        self._shapes: dict[int, tuple[Any, _Shape]] = {}

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if observed.ENABLED:  # RequestObserver's start: one middleware call fewer per request
            req.context.observed_since = time.perf_counter()
        resp.set_header(REQUEST_ID_HEADER, request_id(req))

    def _shape(self, resource: Any) -> _Shape:
        # Keyed by id, holding the resource so that the id cannot be reused.
        found = self._shapes.get(id(resource))
        if found is None or found[0] is not resource:
            found = self._shapes[id(resource)] = (resource, _Shape(resource))
        return found[1]

    async def process_resource(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        params: dict[str, Any],
    ) -> None:
        if resource is None:
            return
        shape = self._shape(resource)
        if not shape.needs_caller:
            return
        settings = self._svc.settings
        headers = RequestHeaders(req)
        # First, as in Zaqar; before the 405 too, so a signed probe of any method is a 404.
        signed_project = identity.check_signature(
            headers,
            method=req.method,
            path=req.path,
            secret_key=settings.signed_url.secret_key,
            now=self._svc.clock(),
        )
        if req.method not in shape.methods:
            return  # falcon answers 405
        content_type = req.content_type or ""
        if content_type.startswith(FORM_MEDIA_TYPE) and (req.content_length or 0) > 0:
            raise HeaderError(
                "Endpoint does not accept `application/x-www-form-urlencoded` content; "
                "currently supported media type is `application/json`; specify proper "
                'client-side media type with the "Content-Type" header.',
                title="Invalid Content-Type",
            )
        if "accept" in headers and not req.client_accepts_json:
            raise NotAcceptable()
        req.context.caller = await admit(
            settings,
            self._authenticator,
            resource.action(req),
            headers,
            req.params,
            signed_project=signed_project,
            collection=shape.collection,
        )


class RequestObserver:
    """Measures every request, answered by a resource or not (404, 405, errors), for
    ``tidings.observe.requests``. Only in the middleware when that is enabled: otherwise
    a request pays for none of it. Its clock starts in ``RequestChecks.process_request``
    (one middleware call fewer per request), so it times falcon's handling, admission
    included; before ``RequestChecks`` in the list, it sees the response last."""

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        since = req.context.get("observed_since")
        seconds = 0.0 if since is None else time.perf_counter() - since
        actions = getattr(resource, "actions", None)
        operation = actions.get(req.method) if actions is not None else None
        caller = req.context.get("caller")
        if caller is not None:
            project: str | None = caller.project
        else:  # not admitted: what the client named
            raw = req._asgi_headers.get(_PROJECT_KEY)
            project = None if raw is None else raw.decode("latin1")
        observed.request_finished(
            "http",
            operation.value if operation is not None else observed.UNKNOWN,
            resp.status_code,
            seconds,
            _body_size(resp),
            resp.get_header(REQUEST_ID_HEADER),
            project,
        )


def _body_size(resp: falcon.asgi.Response) -> int:
    """The response body's bytes (resources and error handlers set ``data``)."""
    data = resp.data
    if data is not None:
        return len(data)
    text = resp.text
    return 0 if text is None else len(text.encode())
