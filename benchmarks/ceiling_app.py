"""The "ceiling" for bench_core: a trivial Falcon 4 ASGI app on Tidings' server stack.

Served by uvicorn with uvloop + httptools exactly like ``tidings serve``. It routes
``POST /v2/queues/{queue}/messages`` the way Tidings does, reads the request body and
answers a small JSON document with 201, touching no storage. Whatever Tidings does on
top of this (header checks, validation, SQLite, fsync) is what the percentage measures.
"""

from __future__ import annotations

import falcon
import falcon.asgi

_BODY = b'{"resources": ["/v2/queues/bench/messages/0123456789abcdef01234567"]}'


class Messages:
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        await req.stream.read()
        resp.status = falcon.HTTP_201
        resp.content_type = falcon.MEDIA_JSON
        resp.data = _BODY


class Root:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = falcon.HTTP_200
        resp.data = b"ok"


def create_app() -> falcon.asgi.App:
    app = falcon.asgi.App(cors_enable=False)
    app.add_route("/", Root())
    app.add_route("/v2/queues/{queue}/messages", Messages())
    return app
