"""The Falcon ASGI application: routes, middleware and error handlers."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from tidings.errors import TidingsError
from tidings.http import claims, messages, queues, system
from tidings.http.errors import handle_tidings_error, handle_unexpected
from tidings.http.middleware import RequestChecks
from tidings.ops.context import Services


def build_http_app(
    services: Services, extra_middleware: list[Any] | None = None
) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    middleware: list[Any] = [*(extra_middleware or []), RequestChecks(services.settings.transport)]
    app = falcon.asgi.App(
        middleware=middleware,
        cors_enable=False,
    )
    app.req_options.keep_blank_qs_values = False
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(TidingsError, handle_tidings_error)

    queue_item = queues.QueueItem(services)
    message_collection = messages.MessageCollection(services)
    app.add_route("/", system.Versions())
    app.add_route("/v2/", system.Home(services))
    app.add_route("/v2/ping", system.Ping(services))
    if services.settings.admin_mode:
        app.add_route("/v2/health", system.Health(services))
    app.add_route("/v2/queues", queues.QueueCollection(services))
    app.add_route("/v2/queues/", queue_item)
    app.add_route("/v2/queues/{queue}", queue_item)
    app.add_route("/v2/queues/{queue}/stats", queues.QueueStats(services))
    app.add_route("/v2/queues/{queue}/purge", queues.QueuePurge(services))
    app.add_route("/v2/queues/{queue}/messages", message_collection)
    app.add_route("/v2/queues/{queue}/messages/", message_collection)
    app.add_route("/v2/queues/{queue}/messages/{message_id}", messages.MessageItem(services))
    app.add_route("/v2/queues/{queue}/claims", claims.ClaimCollection(services))
    app.add_route("/v2/queues/{queue}/claims/{claim_id}", claims.ClaimItem(services))
    return app
