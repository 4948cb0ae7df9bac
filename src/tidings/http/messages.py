"""HTTP adapters for message operations."""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings import views
from tidings.admission import requests
from tidings.admission.actions import Action
from tidings.http import schemas as wire
from tidings.http.base import Resource, methods, next_link, send_json
from tidings.http.longpoll import unless_client_leaves
from tidings.ops import messages as ops


class MessageCollection(Resource):
    actions = methods(
        POST=Action.MESSAGE_POST,
        GET=Action.MESSAGE_LIST,
        DELETE=Action.MESSAGE_DELETE_MANY,
    )

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        # Size and body are checked by the operation: the limit is the queue's.
        raw, size = await self.raw_body(req)
        ids = await ops.message_post(self.svc, self.caller(req), queue, raw, size)
        resp.location = f"{views.queue_href(queue, self.collection)}/messages?ids={','.join(ids)}"
        hrefs = [views.message_href(queue, i, collection=self.collection) for i in ids]
        send_json(resp, wire.PostedMessages(resources=hrefs), 201)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        query = requests.message_reading(req.params)
        if isinstance(query, requests.MessageSelection):
            found, now = await ops.message_get_many(self.svc, self.caller(req), queue, query.ids)
            items = [self.message_view(m, queue, now) for m in found]
            send_json(resp, {"messages": items})
            return
        listing = ops.message_list(
            self.svc,
            self.caller(req),
            queue,
            marker=query.marker,
            limit=query.limit,
            echo=query.echo,
            include_claimed=query.include_claimed,
            include_delayed=query.include_delayed,
            wait=query.wait,
        )
        page = await unless_client_leaves(req, listing, query.wait)
        items = [self.message_view(m, queue, page.now) for m in page.messages]
        links: list[wire.Link] = []
        if page.next_marker is not None:
            extra = {"include_delayed": "true"} if page.delays_off else {}
            links = next_link(req, page.next_marker, **extra)
        send_json(resp, {"messages": items, "links": links})

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        query = requests.message_removal(req.params)
        if isinstance(query, requests.MessagePop):
            popped, now = await ops.message_pop(self.svc, self.caller(req), queue, query.count)
            checksums = self.svc.settings.enable_checksum
            items = [views.popped_message(m, now, with_checksum=checksums) for m in popped]
            send_json(resp, {"messages": items})
            return
        await ops.message_delete_many(
            self.svc, self.caller(req), queue, query.ids, query.claim_ids
        )
        resp.status = falcon.HTTP_204


class MessageItem(Resource):
    actions = methods(GET=Action.MESSAGE_GET, DELETE=Action.MESSAGE_DELETE)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, message_id: str
    ) -> None:
        message, now = await ops.message_get(self.svc, self.caller(req), queue, message_id)
        send_json(resp, self.message_view(message, queue, now))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str, message_id: str
    ) -> None:
        claim_id = requests.claim_id(req.params)
        await ops.message_delete(self.svc, self.caller(req), queue, message_id, claim_id)
        resp.status = falcon.HTTP_204
