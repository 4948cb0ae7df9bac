"""HTTP adapters for queue operations."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from tidings import views
from tidings.errors import UnsupportedMediaType
from tidings.http.base import Resource, next_link, send_json
from tidings.http.params import (
    bool_param,
    int_param,
    optional_document,
    read_body,
    read_document,
)
from tidings.ops import metadata as reserved
from tidings.ops import queues as ops

PATCH_MEDIA_TYPE = "application/openstack-messaging-v2.0-json-patch"
LIST_PARAMS = frozenset({"marker", "limit", "detailed", "with_count", "name"})


def _filter_value(raw: str) -> Any:
    try:
        return int(raw)
    except ValueError:
        return raw


class QueueCollection(Resource):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        detailed = bool_param(req, "detailed")
        page = await ops.queue_list(
            self.svc,
            self.caller(req),
            marker=req.get_param("marker"),
            limit=int_param(req, "limit"),
            with_count=bool_param(req, "with_count"),
            name_contains=req.get_param("name"),
            metadata_equals={
                k: _filter_value(v)
                for k, v in req.params.items()
                if k not in LIST_PARAMS and isinstance(v, str)
            },
        )
        limits = self.svc.settings.transport
        items = []
        for queue in page.queues:
            item: dict[str, Any] = {"name": queue.name}
            if detailed:
                item["metadata"] = reserved.with_defaults(queue.metadata, limits)
            item["href"] = views.queue_href(queue.name, self.collection)
            items.append(item)
        body: dict[str, Any] = {
            self.collection: items,
            "links": next_link(req, page.next_marker) if page.next_marker else [],
        }
        if page.count:
            body["count"] = page.count
        send_json(resp, body)


class QueueItem(Resource):
    # Also mounted at /v2/queues/ (empty name), which the operations reject with 400.

    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        raw, size = await read_body(req, self.svc.settings.transport.max_queue_metadata)
        ops.check_metadata_size(self.svc, size)
        created = await ops.queue_create(self.svc, self.caller(req), queue, optional_document(raw))
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
        raw, size = await read_body(req, self.svc.settings.transport.max_queue_metadata)
        ops.check_metadata_size(self.svc, size, patch=True)
        if (req.content_type or "").split(";")[0].strip() != PATCH_MEDIA_TYPE:
            raise UnsupportedMediaType(
                f"Accepted media type for PATCH: {{'Accept-Patch': '{PATCH_MEDIA_TYPE}'}}."
            )
        document = optional_document(raw)
        send_json(resp, await ops.queue_update(self.svc, self.caller(req), queue, document))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str = ""
    ) -> None:
        await ops.queue_delete(self.svc, self.caller(req), queue)
        resp.status = falcon.HTTP_204


class QueueStats(Resource):
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        stats, now = await ops.queue_stats(self.svc, self.caller(req), queue)
        send_json(resp, views.stats(stats, queue, now, self.collection))


class QueuePurge(Resource):
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await read_document(req, self.svc.settings.transport.max_queue_metadata)
        await ops.queue_purge(self.svc, self.caller(req), queue, document)
        resp.status = falcon.HTTP_204
