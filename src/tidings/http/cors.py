"""CORS as oslo.middleware does it for Zaqar, configured by ``[cors]``.

falcon.CORSMiddleware does not fit: its preflight answer allows whatever method and
headers the browser asks for, with a fixed max-age, while ``[cors]`` names the methods
and headers allowed. So this is a small middleware with oslo.middleware's rules:

* a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
  answered here, 200 with an empty body, before routing and authentication (browsers
  send no credentials with it); it carries the CORS headers only when the origin, the
  method and every requested header are allowed, so a browser refuses the rest;
* any other response to an allowed origin gets ``Access-Control-Allow-Origin`` and,
  if configured, ``-Allow-Credentials`` and ``-Expose-Headers``.

Only registered while ``[cors] allowed_origin`` lists something.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon.asgi

from tidings.config import CorsSettings

log = logging.getLogger("tidings.http")

WILDCARD = "*"
# Request headers a preflight may name without being configured (oslo.middleware's list).
SIMPLE_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "cache-control",
        "content-language",
        "expires",
        "last-modified",
        "pragma",
    }
)


class Cors:
    """Falcon middleware; register it after the one that sets the request id."""

    def __init__(self, settings: CorsSettings) -> None:
        self._origins = frozenset(settings.allowed_origin)
        self._credentials = settings.allow_credentials
        self._expose = ",".join(settings.expose_headers)
        self._max_age = str(settings.max_age) if settings.max_age else None
        self._methods = frozenset(settings.allow_methods)
        self._headers = SIMPLE_HEADERS | {h.strip().lower() for h in settings.allow_headers}

    def _allowed_origin(self, origin: str | None) -> str | None:
        """What ``Access-Control-Allow-Origin`` says to ``origin``; None: not allowed."""
        if origin is None:
            return None
        if origin in self._origins:
            return origin
        return WILDCARD if WILDCARD in self._origins else None

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        origin = req.get_header("Origin")
        method = req.get_header("Access-Control-Request-Method")
        if req.method != "OPTIONS" or origin is None or method is None:
            return
        req.context.cors_preflight = True
        resp.status = falcon.HTTP_200
        resp.complete = True  # nothing else runs: no routing, no admission
        resp.set_header("Vary", "Origin")
        listed = req.get_header("Access-Control-Request-Headers", default="")
        requested = [h.strip() for h in listed.split(",") if h.strip()]
        allowed = self._allowed_origin(origin)
        refused = [h for h in requested if h.lower() not in self._headers]
        if allowed is None or method not in self._methods or refused:
            # Answered without CORS headers, the browser refuses the actual request.
            log.debug(
                "CORS preflight refused: origin %r, method %r, headers not allowed %r",
                origin,
                method,
                refused,
            )
            return
        resp.set_header("Access-Control-Allow-Origin", allowed)
        if self._credentials:
            resp.set_header("Access-Control-Allow-Credentials", "true")
        if self._max_age is not None:
            resp.set_header("Access-Control-Max-Age", self._max_age)
        resp.set_header("Access-Control-Allow-Methods", method)
        if requested:
            resp.set_header("Access-Control-Allow-Headers", ",".join(requested))

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        if getattr(req.context, "cors_preflight", False):
            return
        # The answer depends on the Origin, whether or not this one is allowed.
        resp.append_header("Vary", "Origin")
        allowed = self._allowed_origin(req.get_header("Origin"))
        if allowed is None:
            return
        resp.set_header("Access-Control-Allow-Origin", allowed)
        if self._credentials:
            resp.set_header("Access-Control-Allow-Credentials", "true")
        if self._expose:
            resp.set_header("Access-Control-Expose-Headers", self._expose)
