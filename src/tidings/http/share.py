"""HTTP adapter for pre-signed URL creation."""

from __future__ import annotations

import falcon.asgi

from tidings.admission.actions import Action
from tidings.http.base import Resource, caller, methods, send_json
from tidings.ops import share as ops


class QueueShare(Resource):
    actions = methods(POST=Action.QUEUE_SHARE)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await self.document(req)
        send_json(resp, ops.share_create(self.svc, caller(req), queue, document))
