"""HTTP adapter for pre-signed URL creation."""

from __future__ import annotations

import falcon.asgi

from tidings.http.base import Resource, caller, send_json
from tidings.http.params import read_document
from tidings.ops import share as ops


class QueueShare(Resource):
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await read_document(req, self.svc.settings.transport.max_queue_metadata)
        send_json(resp, ops.share_create(self.svc, caller(req), queue, document))
