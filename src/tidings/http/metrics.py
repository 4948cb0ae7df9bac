"""``GET /metrics``: the Prometheus metrics on the main port (``tidings.observe.metrics``)."""

from __future__ import annotations

import falcon.asgi

from tidings.admission.actions import Action
from tidings.http.base import Resource, methods
from tidings.observe import metrics


class Metrics(Resource):
    """For callers that pass the ``metrics:get`` rule (default ``role:admin``); routed
    when ``[metrics] enabled`` and no ``[metrics] port`` takes the metrics elsewhere."""

    actions = methods(GET=Action.METRICS)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = metrics.CONTENT_TYPE
        resp.data = await metrics.render(self.svc)
