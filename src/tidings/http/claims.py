"""HTTP adapters for claim operations."""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings import views
from tidings.admission import requests
from tidings.admission.actions import Action
from tidings.http.base import Resource, methods, send_json
from tidings.http.longpoll import unless_client_leaves
from tidings.ops import claims as ops


class ClaimCollection(Resource):
    actions = methods(POST=Action.CLAIM_CREATE)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await self.document(req)
        limit = requests.limit(req.params)
        wait = requests.wait(req.params)
        result, now = await unless_client_leaves(
            req, ops.claim_create(self.svc, self.caller(req), queue, document, limit, wait), wait
        )
        if result is None:
            resp.status = falcon.HTTP_204
            return
        resp.location = views.claim_href(queue, result.id)
        messages = [self.message_view(m, queue, now) for m in result.messages]
        send_json(resp, {"messages": messages}, 201)


class ClaimItem(Resource):
    actions = methods(GET=Action.CLAIM_GET, PATCH=Action.CLAIM_UPDATE, DELETE=Action.CLAIM_DELETE)

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
        document = await self.document(req)
        await ops.claim_renew(self.svc, self.caller(req), queue, claim_id, document)
        resp.status = falcon.HTTP_204

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, claim_id: str
    ) -> None:
        await ops.claim_release(self.svc, self.caller(req), queue, claim_id)
        resp.status = falcon.HTTP_204
