"""HTTP adapters for claim operations."""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings import views
from tidings.http.base import Resource, send_json
from tidings.http.params import int_param, read_document
from tidings.ops import claims as ops

MAX_CLAIM_BODY = 4096


class ClaimCollection(Resource):
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await read_document(req, MAX_CLAIM_BODY)
        result, now = await ops.claim_create(
            self.svc, self.caller(req), queue, document, int_param(req, "limit")
        )
        if result is None:
            resp.status = falcon.HTTP_204
            return
        resp.location = views.claim_href(queue, result.id)
        messages = [self.message_view(m, queue, now) for m in result.messages]
        send_json(resp, {"messages": messages}, 201)


class ClaimItem(Resource):
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, claim_id: str
    ) -> None:
        claim, now = await ops.claim_get(self.svc, self.caller(req), queue, claim_id)
        send_json(
            resp,
            {
                "age": views.age(claim.updated, now),
                "ttl": claim.ttl,
                "messages": [self.message_view(m, queue, now) for m in claim.messages],
                "href": views.claim_href(queue, claim.id),
            },
        )

    async def on_patch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, claim_id: str
    ) -> None:
        document = await read_document(req, MAX_CLAIM_BODY)
        await ops.claim_renew(self.svc, self.caller(req), queue, claim_id, document)
        resp.status = falcon.HTTP_204

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, claim_id: str
    ) -> None:
        await ops.claim_release(self.svc, self.caller(req), queue, claim_id)
        resp.status = falcon.HTTP_204
