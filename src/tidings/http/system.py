"""Versions, the JSON-Home document, the OpenAPI document, ping and health."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import msgspec
from msgspec import UNSET

from tidings.admission import policy
from tidings.admission.actions import Action
from tidings.config import Settings
from tidings.http import openapi
from tidings.http import schemas as wire
from tidings.http.base import Resource, caller, methods, send_json
from tidings.ops import health as ops

VERSIONS = wire.Versions(
    versions=[
        wire.Version(
            id="2",
            status="CURRENT",
            updated="2014-9-24T04:06:47Z",
            media_types=[
                wire.MediaTypes(
                    base="application/json", type="application/vnd.openstack.messaging-v2+json"
                )
            ],
            links=[wire.VersionLink(href="/v2/", rel="self")],
        )
    ]
)

_Q = "/v2/queues/{queue_name}"
# (relation, href template, allowed methods, accepts a posted body, template variables)
_RESOURCES: list[tuple[str, str, list[str], bool, dict[str, str]]] = [
    (
        "queues",
        "/v2/queues{?marker,limit,detailed}",
        ["GET"],
        False,
        {"marker": "marker", "limit": "queue_limit", "detailed": "detailed"},
    ),
    ("queue", _Q, ["GET", "PUT", "DELETE", "PATCH"], False, {"queue_name": "queue_name"}),
    ("queue_stats", _Q + "/stats", ["GET"], False, {"queue_name": "queue_name"}),
    ("queue_share", _Q + "/share", ["POST"], True, {"queue_name": "queue_name"}),
    ("queue_purge", _Q + "/purge", ["POST"], True, {"queue_name": "queue_name"}),
    (
        "messages",
        _Q + "/messages{?marker,limit,echo,include_claimed}",
        ["GET"],
        False,
        {
            "queue_name": "queue_name",
            "marker": "marker",
            "limit": "messages_limit",
            "echo": "echo",
            "include_claimed": "include_claimed",
        },
    ),
    ("post_messages", _Q + "/messages", ["POST"], True, {"queue_name": "queue_name"}),
    (
        "messages_delete",
        _Q + "/messages{?ids,pop}",
        ["DELETE"],
        False,
        {"queue_name": "queue_name", "ids": "ids", "pop": "pop"},
    ),
    (
        "message_delete",
        _Q + "/messages/{message_id}{?claim}",
        ["DELETE"],
        False,
        {"queue_name": "queue_name", "message_id": "message_id", "claim": "claim_id"},
    ),
    (
        "message_get",
        _Q + "/messages/{message_id}",
        ["GET"],
        False,
        {"queue_name": "queue_name", "message_id": "message_id"},
    ),
    (
        "claim",
        _Q + "/claims/{claim_id}",
        ["GET"],
        False,
        {"queue_name": "queue_name", "claim_id": "claim_id"},
    ),
    (
        "post_claim",
        _Q + "/claims{?limit}",
        ["POST"],
        True,
        {"queue_name": "queue_name", "limit": "claim_limit"},
    ),
    (
        "patch_claim",
        _Q + "/claims/{claim_id}",
        ["PATCH"],
        True,
        {"queue_name": "queue_name", "claim_id": "claim_id"},
    ),
    (
        "delete_claim",
        _Q + "/claims/{claim_id}",
        ["DELETE"],
        False,
        {"queue_name": "queue_name", "claim_id": "claim_id"},
    ),
    (
        "subscriptions_get",
        _Q + "/subscriptions{?marker,limit}",
        ["GET"],
        False,
        {"queue_name": "queue_name", "marker": "marker", "limit": "subscription_limit"},
    ),
    ("subscriptions_post", _Q + "/subscriptions", ["POST"], True, {"queue_name": "queue_name"}),
    (
        "subscription",
        _Q + "/subscriptions/{subscriptions_id}",
        ["GET", "DELETE"],
        False,
        {"queue_name": "queue_name", "subscriptions_id": "subscriptions_id"},
    ),
    (
        "subscription_patch",
        _Q + "/subscriptions/{subscriptions_id}",
        ["PATCH"],
        True,
        {"queue_name": "queue_name", "subscriptions_id": "subscriptions_id"},
    ),
    ("ping", "/v2/ping", ["GET"], False, {}),
]


def _hints(allow: list[str], accepts_post: bool = False) -> wire.HomeHints:
    return wire.HomeHints(
        allow=allow,
        formats={"application/json": {}},
        accept_post=["application/json"] if accepts_post else UNSET,
    )


def home_document(settings: Settings) -> bytes:
    resources: dict[str, wire.HomeResource] = {}
    for rel, template, allow, accepts_post, variables in _RESOURCES:
        resources[f"rel/{rel}"] = wire.HomeResource(
            href_template=template,
            href_vars={k: f"param/{v}" for k, v in variables.items()} if variables else UNSET,
            hints=_hints(allow, accepts_post),
        )
    if policy.offered(Action.HEALTH, settings):
        resources["rel/health"] = wire.HomeResource(href="/v2/health", hints=_hints(["GET"]))
    if settings.admin_mode and settings.pooling:  # where the routes exist
        resources.update(_admin_pooling_resources())
    encoded = msgspec.json.encode(wire.HomeDocument(resources=resources))
    return msgspec.json.format(encoded, indent=4)


def _admin_pooling_resources() -> dict[str, wire.HomeResource]:
    found: dict[str, wire.HomeResource] = {}
    for kind in ("pool", "flavor"):
        listing = {"detailed": "param/detailed", "limit": f"param/{kind}_limit",
                   "marker": "param/marker"}  # fmt: skip
        found[f"rel/{kind}s"] = wire.HomeResource(
            href_template=f"/v2/{kind}s{{?detailed,limit,marker}}",
            href_vars=listing,
            hints=_hints(["GET"]),
        )
        found[f"rel/{kind}"] = wire.HomeResource(
            href_template=f"/v2/{kind}s/{{{kind}_name}}",
            href_vars={f"{kind}_name": f"param/{kind}_name"},
            hints=_hints(["GET", "PUT", "PATCH", "DELETE"]),
        )
    return found


class Versions:
    needs_caller = False
    openapi_operation = Action.VERSIONS.value  # no caller, so no ``actions``

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, VERSIONS, 300)


class Home(Resource):
    actions = methods(GET=Action.HOME)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = "application/json-home"
        resp.cache_control = ["max-age=86400"]
        resp.data = home_document(self.svc.settings)


class Ping(Resource):
    actions = methods(GET=Action.PING, HEAD=Action.PING)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = falcon.HTTP_204 if await ops.ping(self.svc) else falcon.HTTP_503

    async def on_head(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = falcon.HTTP_204


class Health(Resource):
    """Admin only (``admission.policy``): routed in admin mode, run for the admin role."""

    actions = methods(GET=Action.HEALTH)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        send_json(resp, await ops.health(self.svc, caller(req)))


class OpenApiDocument:
    """``GET /v2/openapi.json``: this server's OpenAPI 3.1 document, for anyone (as the
    versions are). Built from ``app``'s routes on the first request, once they are all
    added, and kept."""

    needs_caller = False
    openapi_operation = "get_openapi"

    def __init__(self, app: falcon.asgi.App[Any, Any], settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._document: bytes | None = None

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._document is None:
            self._document = openapi.encoded(self._app, self._settings)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._document
