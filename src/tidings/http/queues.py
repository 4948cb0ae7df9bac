"""HTTP adapters for queue operations."""

from __future__ import annotations

import falcon
import falcon.asgi
from msgspec import UNSET

from tidings import views
from tidings.admission import requests
from tidings.admission.actions import Action
from tidings.http import schemas as wire
from tidings.http.base import Resource, methods, next_link, send_json
from tidings.ops import queues as ops

PATCH_MEDIA_TYPE = "application/openstack-messaging-v2.0-json-patch"


class QueueCollection(Resource):
    actions = methods(GET=Action.QUEUE_LIST)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        query = requests.queue_listing(req.params)
        page = await ops.queue_list(
            self.svc,
            self.caller(req),
            marker=query.marker,
            limit=query.limit,
            with_count=query.with_count,
            name_contains=query.name_contains,
            metadata_equals=query.metadata_equals,
        )
        items = views.queue_entries(
            page.queues,
            detailed=query.detailed,
            limits=self.svc.settings.transport,
            collection=self.collection,
            with_href=True,
        )
        links = next_link(req, page.next_marker) if page.next_marker else []
        count = page.count or UNSET
        if self.collection == "topics":
            send_json(resp, wire.TopicListing(topics=items, links=links, count=count))
        else:
            send_json(resp, wire.QueueListing(queues=items, links=links, count=count))


class QueueItem(Resource):
    # Also mounted at /v2/queues/ (empty name), which the operations reject with 400.
    actions = methods(
        PUT=Action.QUEUE_CREATE,
        GET=Action.QUEUE_GET,
        HEAD=Action.QUEUE_EXISTS,
        PATCH=Action.QUEUE_UPDATE,
        DELETE=Action.QUEUE_DELETE,
    )
    media_types = methods(PATCH=PATCH_MEDIA_TYPE)

    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        document = await self.document(req)
        created = await ops.queue_create(self.svc, self.caller(req), queue, document)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_204
        resp.content_type = falcon.MEDIA_JSON
        resp.location = views.queue_href(queue, self.collection)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        send_json(resp, await ops.queue_get(self.svc, self.caller(req), queue))

    async def on_head(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        # Zaqar answers 405, which makes python-zaqarclient's exists() always true.
        found = await ops.queue_exists(self.svc, self.caller(req), queue)
        resp.status = falcon.HTTP_204 if found else falcon.HTTP_404

    async def on_patch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        document = await self.document(req)
        send_json(resp, await ops.queue_update(self.svc, self.caller(req), queue, document))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        await ops.queue_delete(self.svc, self.caller(req), queue)
        resp.status = falcon.HTTP_204


class QueueStats(Resource):
    actions = methods(GET=Action.QUEUE_STATS)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        stats, now = await ops.queue_stats(self.svc, self.caller(req), queue)
        send_json(resp, views.stats(stats, queue, now, self.collection))


class QueuePurge(Resource):
    actions = methods(POST=Action.QUEUE_PURGE)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await self.document(req)
        await ops.queue_purge(self.svc, self.caller(req), queue, document)
        resp.status = falcon.HTTP_204
