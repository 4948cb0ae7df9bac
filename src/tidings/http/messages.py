"""HTTP adapters for message operations."""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings import views
from tidings.errors import BadRequest
from tidings.http.base import Resource, next_link, send_json
from tidings.http.params import bool_param, int_param, list_param, read_body
from tidings.ops import messages as ops


class MessageCollection(Resource):
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        raw, size = await read_body(req, self.svc.settings.transport.max_messages_post_size)
        ids = await ops.message_post(self.svc, self.caller(req), queue, raw, size)
        resp.location = f"{views.queue_href(queue, self.collection)}/messages?ids={','.join(ids)}"
        send_json(
            resp,
            {"resources": [views.message_href(queue, i, collection=self.collection) for i in ids]},
            201,
        )

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        ids = list_param(req, "ids")
        if ids is not None:
            found, now = await ops.message_get_many(self.svc, self.caller(req), queue, ids)
            items = [self.message_view(m, queue, now) for m in found]
            send_json(resp, {"messages": items})
            return
        page = await ops.message_list(
            self.svc,
            self.caller(req),
            queue,
            marker=req.get_param("marker"),
            limit=int_param(req, "limit"),
            echo=bool_param(req, "echo"),
            include_claimed=bool_param(req, "include_claimed"),
            include_delayed=bool_param(req, "include_delayed"),
        )
        items = [self.message_view(m, queue, page.now) for m in page.messages]
        links: list[dict[str, str]] = []
        if page.next_marker is not None:
            extra = {"include_delayed": "true"} if page.delays_off else {}
            links = next_link(req, page.next_marker, **extra)
        send_json(resp, {"messages": items, "links": links})

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        ids = list_param(req, "ids")
        pop = int_param(req, "pop")
        if ids is not None and pop is not None:
            raise BadRequest("pop and id params cannot be present together in the delete request.")
        if pop is not None:
            popped, now = await ops.message_pop(self.svc, self.caller(req), queue, pop)
            send_json(resp, {"messages": [views.popped_message(m, now) for m in popped]})
            return
        if ids is None:
            raise BadRequest(
                'The request should have either "ids" or "pop" parameter in the request, '
                "to be able to delete."
            )
        claim_ids = list_param(req, "claim_ids")
        await ops.message_delete_many(self.svc, self.caller(req), queue, ids, claim_ids)
        resp.status = falcon.HTTP_204


class MessageItem(Resource):
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, message_id: str
    ) -> None:
        message, now = await ops.message_get(self.svc, self.caller(req), queue, message_id)
        send_json(
            resp,
            self.message_view(message, queue, now),
        )

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, message_id: str
    ) -> None:
        claim_id = req.get_param("claim_id")
        await ops.message_delete(self.svc, self.caller(req), queue, message_id, claim_id)
        resp.status = falcon.HTTP_204
