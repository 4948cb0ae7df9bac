"""HTTP adapters for pools and flavors (routed only with ``admin_mode`` and ``pooling``)."""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings.admission import requests
from tidings.admission.actions import Action
from tidings.http import schemas as wire
from tidings.http.base import Resource, methods, next_link, send_json
from tidings.ops import flavors, pools
from tidings.views import flavor_entry, flavor_view, pool_view


class PoolCollection(Resource):
    actions = methods(GET=Action.POOL_LIST)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        query = requests.admin_listing(req.params)
        page = await pools.pool_list(self.svc, marker=query.marker, limit=query.limit)
        resp.content_location = req.relative_uri
        links = next_link(req, page.next_marker) if page.next_marker else []
        pools_shown = [pool_view(p, detailed=query.detailed) for p in page.pools]
        send_json(resp, wire.PoolListing(links=links, pools=pools_shown))


class PoolItem(Resource):
    actions = methods(
        GET=Action.POOL_GET,
        PUT=Action.POOL_CREATE,
        PATCH=Action.POOL_UPDATE,
        DELETE=Action.POOL_DELETE,
    )

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, pool: str) -> None:
        found = await pools.pool_get(self.svc, pool)
        send_json(resp, pool_view(found, detailed=requests.detailed(req.params)))

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, pool: str) -> None:
        document = await self.document(req)
        await pools.pool_put(self.svc, pool, document)
        resp.status = falcon.HTTP_201  # Zaqar answers 201 to a replacement too
        resp.location = req.path

    async def on_patch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, pool: str
    ) -> None:
        document = await self.document(req)
        updated = await pools.pool_update(self.svc, pool, document)
        send_json(resp, pool_view(updated, detailed=False))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, pool: str
    ) -> None:
        await pools.pool_delete(self.svc, pool)
        resp.status = falcon.HTTP_204


class FlavorCollection(Resource):
    actions = methods(GET=Action.FLAVOR_LIST)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        query = requests.admin_listing(req.params)
        page = await flavors.flavor_list(
            self.svc, self.caller(req), marker=query.marker, limit=query.limit
        )
        links = next_link(req, page.next_marker) if page.next_marker else []
        entries = [flavor_entry(f, detailed=query.detailed) for f in page.flavors]
        send_json(resp, wire.FlavorListing(links=links, flavors=entries))


class FlavorItem(Resource):
    actions = methods(
        GET=Action.FLAVOR_GET,
        PUT=Action.FLAVOR_CREATE,
        PATCH=Action.FLAVOR_UPDATE,
        DELETE=Action.FLAVOR_DELETE,
    )

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, flavor: str
    ) -> None:
        found = await flavors.flavor_get(self.svc, self.caller(req), flavor)
        send_json(resp, flavor_view(found))

    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, flavor: str
    ) -> None:
        document = await self.document(req)
        await flavors.flavor_put(self.svc, self.caller(req), flavor, document)
        resp.status = falcon.HTTP_201
        resp.location = req.path

    async def on_patch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, flavor: str
    ) -> None:
        document = await self.document(req)
        updated = await flavors.flavor_update(self.svc, self.caller(req), flavor, document)
        send_json(resp, flavor_view(updated))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, flavor: str
    ) -> None:
        await flavors.flavor_delete(self.svc, self.caller(req), flavor)
        resp.status = falcon.HTTP_204
