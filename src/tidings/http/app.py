"""The Falcon ASGI application: routes, middleware and error handlers; and the server's
ASGI application, which adds the WebSocket API (``build_asgi_app``)."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from tidings.admission import policy
from tidings.admission.actions import Action
from tidings.admission.auth import Authenticator
from tidings.admission.auth.aws import create_aws_authenticator
from tidings.errors import TidingsError
from tidings.http import claims, messages, pools, queues, share, subscriptions, system
from tidings.http.cors import Cors
from tidings.http.errors import handle_tidings_error, handle_unexpected
from tidings.http.longpoll import ClientGone, answer_nobody
from tidings.http.metrics import Metrics
from tidings.http.middleware import RequestChecks, RequestObserver
from tidings.observe import requests as observed
from tidings.ops.context import Services
from tidings.sqs.app import SqsApp
from tidings.sqs.port import SqsLifecycle, sqs_listener
from tidings.ws.endpoint import Endpoint, Router, listener


def build_asgi_app(
    services: Services,
    authenticator: Authenticator,
    extra_middleware: list[Any] | None = None,
) -> Router:
    """What the server runs: the HTTP API, and the WebSocket API at ``/`` and ``/v2/ws``
    (and on ``[websocket] port`` when set), sharing the services and the authenticator;
    and the SQS face (``[sqs] enabled``), on the HTTP port and on ``[sqs] port``."""
    endpoint = Endpoint(services, authenticator)
    middleware = list(extra_middleware or [])
    if services.settings.websocket.port:
        # After the others' startup (the store is open), before their shutdown.
        middleware.append(listener(endpoint, services.settings))
    sqs = None
    if services.settings.sqs.enabled:
        sqs = SqsApp(services, create_aws_authenticator(services.settings, authenticator))
        middleware.append(SqsLifecycle(sqs))
        if services.settings.sqs.port:
            middleware.append(sqs_listener(sqs, services.settings))
    return Router(build_http_app(services, authenticator, middleware), endpoint, sqs=sqs)


def build_http_app(
    services: Services,
    authenticator: Authenticator,
    extra_middleware: list[Any] | None = None,
) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    middleware: list[Any] = [
        *(extra_middleware or []),
        # Metrics and access lines: in the list only when asked for (zero cost otherwise).
        *([RequestObserver()] if observed.ENABLED else []),
        RequestChecks(services, authenticator),
    ]
    cors_settings = services.settings.cors
    if cors_settings.allowed_origin:
        # After RequestChecks: a preflight it answers still gets its request id.
        middleware.append(Cors(cors_settings))
    # Built now: a policy file that cannot be loaded stops the server from starting.
    policy.enforcer(services.settings.oslo_policy.policy_file)
    app = falcon.asgi.App(
        middleware=middleware,
        cors_enable=False,
    )
    app.req_options.keep_blank_qs_values = False
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(TidingsError, handle_tidings_error)
    app.add_error_handler(ClientGone, answer_nobody)

    app.add_route("/", system.Versions())
    app.add_route("/v2/", system.Home(services))
    app.add_route("/v2/ping", system.Ping(services))
    app.add_route("/v2/openapi.json", system.OpenApiDocument(app, services.settings))
    if policy.offered(Action.HEALTH, services.settings):
        app.add_route("/v2/health", system.Health(services))
    if services.settings.metrics.enabled and services.settings.metrics.port is None:
        app.add_route("/metrics", Metrics(services))  # else on [metrics] port, or nowhere
    for collection in ("queues", "topics"):
        _add_collection_routes(app, services, collection)
    app.add_route("/v2/queues/{queue}/share", share.QueueShare(services))
    app.add_route("/v2/queues/{queue}/claims", claims.ClaimCollection(services))
    app.add_route("/v2/queues/{queue}/claims/{claim_id}", claims.ClaimItem(services))
    if services.settings.admin_mode and services.settings.pooling:
        # Zaqar's rule: the operator's pool and flavor API exists only in this mode.
        app.add_route("/v2/pools", pools.PoolCollection(services))
        app.add_route("/v2/pools/{pool}", pools.PoolItem(services))
        app.add_route("/v2/flavors", pools.FlavorCollection(services))
        app.add_route("/v2/flavors/{flavor}", pools.FlavorItem(services))
    return app


def _add_collection_routes(
    app: falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response],
    services: Services,
    collection: str,
) -> None:
    """Queues and topics share their routes; topics live in a namespace of their own."""
    base = f"/v2/{collection}"
    item = queues.QueueItem(services, collection)
    message_collection = messages.MessageCollection(services, collection)
    subscription_item = subscriptions.SubscriptionItem(services, collection)
    app.add_route(base, queues.QueueCollection(services, collection))
    app.add_route(f"{base}/", item)
    app.add_route(f"{base}/{{queue}}", item)
    app.add_route(f"{base}/{{queue}}/stats", queues.QueueStats(services, collection))
    app.add_route(f"{base}/{{queue}}/purge", queues.QueuePurge(services, collection))
    app.add_route(f"{base}/{{queue}}/messages", message_collection)
    app.add_route(f"{base}/{{queue}}/messages/", message_collection)
    app.add_route(
        f"{base}/{{queue}}/messages/{{message_id}}", messages.MessageItem(services, collection)
    )
    app.add_route(
        f"{base}/{{queue}}/subscriptions",
        subscriptions.SubscriptionCollection(services, collection),
    )
    app.add_route(f"{base}/{{queue}}/subscriptions/{{subscription_id}}", subscription_item)
    app.add_route(
        f"{base}/{{queue}}/subscriptions/{{subscription_id}}/confirm",
        subscriptions.SubscriptionConfirm(services, collection),
    )
    app.add_route(
        f"{base}/{{queue}}/subscriptions/{{subscription_id}}/failures",
        subscriptions.SubscriptionFailures(services, collection),
    )
