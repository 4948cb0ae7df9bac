"""HTTP adapters for subscription operations (under queues and topics alike)."""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings import views
from tidings.admission import requests
from tidings.admission.actions import Action
from tidings.http import schemas as wire
from tidings.http.base import Resource, methods, next_link, send_json
from tidings.ops import subscriptions as ops


class SubscriptionCollection(Resource):
    actions = methods(POST=Action.SUBSCRIPTION_CREATE, GET=Action.SUBSCRIPTION_LIST)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        document = await self.document(req)
        try:
            subscription_id, _ = await ops.subscription_create(
                self.svc, self.caller(req), queue, document
            )
        except ops.SubscriptionExists:
            resp.location = req.path  # Zaqar points a duplicate at the collection
            raise
        resp.location = req.path
        send_json(resp, wire.SubscriptionCreated(subscription_id=subscription_id), 201)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, queue: str
    ) -> None:
        query = requests.page(req.params)
        page, now = await ops.subscription_list(
            self.svc, self.caller(req), queue, marker=query.marker, limit=query.limit
        )
        send_json(
            resp,
            {
                "subscriptions": [views.subscription(s, now) for s in page],
                "links": next_link(req, page[-1].id) if page else [],
            },
        )


class SubscriptionItem(Resource):
    actions = methods(
        GET=Action.SUBSCRIPTION_GET,
        PATCH=Action.SUBSCRIPTION_UPDATE,
        DELETE=Action.SUBSCRIPTION_DELETE,
    )

    async def on_get(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        queue: str,
        subscription_id: str,
    ) -> None:
        found, now = await ops.subscription_get(self.svc, self.caller(req), queue, subscription_id)
        send_json(resp, views.subscription(found, now))

    async def on_patch(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        queue: str,
        subscription_id: str,
    ) -> None:
        document = await self.document(req)
        await ops.subscription_update(self.svc, self.caller(req), queue, subscription_id, document)
        resp.status = falcon.HTTP_204
        resp.location = req.path

    async def on_delete(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        queue: str,
        subscription_id: str,
    ) -> None:
        await ops.subscription_delete(self.svc, self.caller(req), queue, subscription_id)
        resp.status = falcon.HTTP_204


class SubscriptionConfirm(Resource):
    actions = methods(PUT=Action.SUBSCRIPTION_CONFIRM)

    async def on_put(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        queue: str,
        subscription_id: str,
    ) -> None:
        document = await self.document(req)
        await ops.subscription_confirm(self.svc, self.caller(req), queue, subscription_id, document)
        resp.status = falcon.HTTP_204
        resp.location = req.path


class SubscriptionFailures(Resource):
    """Deliveries that exhausted their retries (ours: Zaqar drops them silently)."""

    actions = methods(GET=Action.SUBSCRIPTION_FAILURES)

    async def on_get(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        queue: str,
        subscription_id: str,
    ) -> None:
        failures = await ops.subscription_failures(
            self.svc, self.caller(req), queue, subscription_id, requests.limit(req.params)
        )
        send_json(resp, {"failures": [views.delivery_failure(f) for f in failures]})
