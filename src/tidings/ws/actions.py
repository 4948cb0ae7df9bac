"""WebSocket actions by name: each checks its body and calls the operation HTTP calls.

The transport (``ws.session``) decodes a frame, looks its action up in ``ACTIONS``,
admits it (``admission.gate.admit`` with ``WsAction.action``, ``params_of(body)`` and
``WsAction.collection``), runs ``WsAction.handler`` and renders the ``Reply``. A
``TidingsError`` raised by a handler is a domain error, rendered by the transport as
Zaqar's ``{"exception": description, "error": null}`` frame with the error's status.

A body that does not fit the action's schema (a required field missing, a field of the
wrong JSON type) is answered by the handler itself with Zaqar's 400 ``{"error": "Schema
validation failed."}``; ``WsAction.schema_ok`` lets the transport check it earlier.

Beyond Zaqar's actions: ``subscription_update``, ``subscription_confirm``,
``subscription_failures``, topics (``topic_*``, on the project's topics, named by
``topic_name`` or ``queue_name``), and working ``get_home_doc``, ``ping_node`` and
``check_node_health``. Pools and flavors (``pool_*``, ``flavor_*``, Zaqar's body fields;
``flavor_create`` takes ``pool_list``, or Zaqar's one ``pool_name``) pass policy, then
answer 404 unless the server runs with ``admin_mode`` and ``pooling`` (as their HTTP
routes exist only then); only after that is a missing ``pool_name`` or ``flavor_name``
refused as a schema failure.

Long polling (beyond Zaqar): ``claim_create`` and ``message_list`` take ``"wait": N``
(seconds, 0 < N <= 20), as HTTP's ``?wait=N`` (``ops.waiting``). The session answers
such a frame in a task of its own, so that its wait does not hold up the connection's
other frames (``ws.session.MAX_WAITING_FRAMES``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgspec

from tidings import views
from tidings.admission import requests
from tidings.admission.actions import Action
from tidings.admission.params import Params
from tidings.errors import InvalidBody, ServiceUnavailable
from tidings.http.system import home_document
from tidings.notify.push import PushTarget, subscribe_connection
from tidings.ops import (
    claims,
    flavors,
    health,
    messages,
    pools,
    queues,
    subscriptions,
    waiting,
)
from tidings.ops.context import Caller, Services, noun, split_namespace
from tidings.ops.validation import UNPARSABLE_BODY
from tidings.ws import frames, render

POOLS_NOT_CONFIGURED = pools.POOLS_NOT_CONFIGURED
# Body fields that hold documents, not parameters: admission does not look into them.
DOCUMENT_FIELDS = frozenset({"messages", "metadata", "options"})
# Long polling's field (claim_create, message_list): seconds to wait for messages.
WAIT = "wait"


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What a handler may use: services, the admitted caller (already in_collection)."""

    svc: Services
    caller: Caller
    # The connection, for actions that push to it (subscription_create without subscriber).
    target: PushTarget
    # Whether the request frame was MessagePack (its answer and pushes are too).
    binary: bool
    # Whether a "wait" in the body may wait (False: the connection has as many waiting
    # frames as it may, so this one is answered at once).
    may_wait: bool = True


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: ``headers.status`` and ``body`` of the response frame.

    Message bodies inside are ``msgspec.Raw`` JSON for JSON frames (encode with msgspec)
    and plain values for MessagePack frames.
    """

    status: int
    body: Any


Handler = Callable[[ActionContext, dict[str, Any]], Awaitable[Reply]]


class Kind(enum.Enum):
    """A body field's JSON type, as Zaqar's request schema names it."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    OBJECT = "object"
    ANY = "any"

    def accepts(self, value: object) -> bool:
        match self:
            case Kind.STRING:
                return isinstance(value, str)
            case Kind.INTEGER:
                return isinstance(value, int) and not isinstance(value, bool)
            case Kind.NUMBER:
                return isinstance(value, int | float) and not isinstance(value, bool)
            case Kind.BOOLEAN:
                return isinstance(value, bool)
            case Kind.ARRAY:
                return isinstance(value, list)
            case Kind.OBJECT:
                return isinstance(value, dict)
        return True


@dataclass(frozen=True, slots=True)
class WsAction:
    action: Action
    collection: str  # "queues" or "topics"
    handler: Handler
    # The HTTP method a pre-signed URL must allow for this action (8.4); None: unsignable.
    # The signed path is /v2/<collection>/<queue_name_of(body, collection)>/messages.
    signed_method: str | None = None
    # Whether the body must name a queue (or topic): ``queue_name_of``.
    names_source: bool = False
    # The body's other fields and their types (null counts as absent), and the required.
    fields: Mapping[str, Kind] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    def schema_ok(self, body: object) -> bool:
        """Whether ``body`` (the frame's ``body``) fits this action's schema."""
        return _fits(body, self.fields, self.required, self.names_source, self.collection)

    def waits(self, body: object) -> bool:
        """Whether the frame asks to wait (long polling: ``"wait"`` on claim_create and
        message_list), so its answer may take up to that long."""
        return WAIT in self.fields and isinstance(body, dict) and body.get(WAIT) is not None


def _fits(
    body: object,
    fields: Mapping[str, Kind],
    required: frozenset[str],
    names_source: bool,
    collection: str,
) -> bool:
    if not isinstance(body, dict):
        return False
    if names_source and queue_name_of(body, collection) is None:
        return False
    for name, kind in fields.items():
        value = body.get(name)
        if value is None:
            if name in required:
                return False
        elif not kind.accepts(value):
            return False
    return True


def params_of(body: Mapping[str, Any]) -> Params:
    """The parameters admission checks (``check_parameters``): the body's plain fields."""
    if not isinstance(body, Mapping):
        return {}
    return {k: v for k, v in body.items() if k not in DOCUMENT_FIELDS}


def queue_name_of(body: Mapping[str, Any], collection: str = "queues") -> str | None:
    """The queue (or topic) a frame acts on; None if the body names none.

    Queue actions take ``queue_name``; topic actions ``queue_name``, else ``topic_name``.
    The handler acts on exactly this name, so a signed-URL path check may rely on it;
    ``queue_name`` first, so that a check that leaves ``collection`` out gets the same
    name, or None, never another one.
    """
    if not isinstance(body, Mapping):
        return None
    keys = ("queue_name", "topic_name") if collection == "topics" else ("queue_name",)
    for key in keys:
        value = body.get(key)
        if value is not None:
            return value if isinstance(value, str) else None
    return None


# -- helpers -------------------------------------------------------------------------


def _pick(body: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The named fields that are present and not null."""
    return {name: body[name] for name in names if body.get(name) is not None}


def _collection(ctx: ActionContext) -> str:
    return split_namespace(ctx.caller.project)[1]


def _checksums(ctx: ActionContext) -> bool:
    return ctx.svc.settings.enable_checksum


def _wait(ctx: ActionContext, wait: float | None) -> float | None:
    """The frame's wait, checked; None when the connection may not wait more now."""
    waiting.check_wait(wait)
    return wait if ctx.may_wait else None


def _source(ctx: ActionContext, body: Mapping[str, Any]) -> str:
    name = queue_name_of(body, _collection(ctx))
    assert name is not None  # schema_ok ran
    return name


# -- queues (and topics) ---------------------------------------------------------------


async def _queue_list(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    query = requests.queue_listing(
        _pick(body, "marker", "limit", "detailed", "with_count", "name")
    )
    collection = _collection(ctx)
    page = await queues.queue_list(
        ctx.svc,
        ctx.caller,
        marker=query.marker,
        limit=query.limit,
        with_count=query.with_count,
        name_contains=query.name_contains,
    )
    items = views.queue_entries(
        page.queues,
        detailed=query.detailed,
        limits=ctx.svc.settings.transport,
        collection=collection,
        with_href=False,
    )
    answer: dict[str, Any] = {collection: items}
    if page.count:
        answer["count"] = page.count
    return Reply(200, answer)


async def _queue_create(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    name = _source(ctx, body)
    created = await queues.queue_create(ctx.svc, ctx.caller, name, body.get("metadata"))
    return Reply(201 if created else 204, f"{noun(ctx.caller).title()} {name} created.")


async def _queue_get(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    return Reply(200, await queues.queue_get(ctx.svc, ctx.caller, _source(ctx, body)))


async def _queue_delete(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    name = _source(ctx, body)
    await queues.queue_delete(ctx.svc, ctx.caller, name)
    return Reply(204, f"{noun(ctx.caller).title()} {name} removed.")


async def _queue_stats(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    name = _source(ctx, body)
    found, now = await queues.queue_stats(ctx.svc, ctx.caller, name)
    return Reply(200, render.stats(found, name, now, _collection(ctx)))


async def _queue_purge(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    document = _pick(body, "resource_types") or None
    await queues.queue_purge(ctx.svc, ctx.caller, _source(ctx, body), document)
    return Reply(204, {})


# -- messages --------------------------------------------------------------------------


async def _message_list(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    name = _source(ctx, body)
    query = requests.message_reading(
        _pick(body, "marker", "limit", "echo", "include_claimed", "include_delayed", WAIT)
    )
    assert isinstance(query, requests.MessageListing)  # no "ids" were given
    page = await messages.message_list(
        ctx.svc,
        ctx.caller,
        name,
        marker=query.marker,
        limit=query.limit,
        echo=query.echo,
        include_claimed=query.include_claimed,
        include_delayed=query.include_delayed,
        wait=_wait(ctx, query.wait),
    )
    items = [
        render.message(m, page.now, binary=ctx.binary, with_checksum=_checksums(ctx))
        for m in page.messages
    ]
    return Reply(200, {"messages": items})


async def _message_get(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    found, now = await messages.message_get(
        ctx.svc, ctx.caller, _source(ctx, body), body["message_id"]
    )
    # Zaqar wraps the one message in "messages" too.
    view = render.message(found, now, binary=ctx.binary, with_checksum=_checksums(ctx))
    return Reply(200, {"messages": view})


async def _message_get_many(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    query = requests.message_reading({"ids": body["message_ids"]})
    ids = query.ids if isinstance(query, requests.MessageSelection) else []
    found, now = await messages.message_get_many(ctx.svc, ctx.caller, _source(ctx, body), ids)
    items = [
        render.message(m, now, binary=ctx.binary, with_checksum=_checksums(ctx)) for m in found
    ]
    return Reply(200, {"messages": items})


async def _message_post(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    # As JSON, the posted batch goes through the very parser (and size rule) of HTTP.
    try:
        raw = msgspec.json.encode({"messages": body["messages"]})
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
        raise InvalidBody(UNPARSABLE_BODY) from exc
    ids = await messages.message_post(ctx.svc, ctx.caller, _source(ctx, body), raw, len(raw))
    return Reply(201, {"message_ids": ids})


async def _message_delete(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    claim_id = requests.claim_id(_pick(body, "claim_id"))
    await messages.message_delete(
        ctx.svc, ctx.caller, _source(ctx, body), body["message_id"], claim_id
    )
    return Reply(204, {})


async def _message_delete_many(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    name = _source(ctx, body)
    params = _pick(body, "pop")
    for field_name, param in (("message_ids", "ids"), ("claim_ids", "claim_ids")):
        if body.get(field_name) is not None:
            params[param] = body[field_name]
    query = requests.message_removal(params)
    if isinstance(query, requests.MessagePop):
        popped, now = await messages.message_pop(ctx.svc, ctx.caller, name, query.count)
        items = [
            render.popped(m, now, binary=ctx.binary, with_checksum=_checksums(ctx))
            for m in popped
        ]
        return Reply(200, {"messages": items})
    await messages.message_delete_many(ctx.svc, ctx.caller, name, query.ids, query.claim_ids)
    return Reply(204, {})


# -- claims ----------------------------------------------------------------------------


async def _claim_create(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    limit = requests.limit(_pick(body, "limit"))
    wait = requests.wait(_pick(body, WAIT))
    result, now = await claims.claim_create(
        ctx.svc,
        ctx.caller,
        _source(ctx, body),
        _pick(body, "ttl", "grace"),
        limit,
        _wait(ctx, wait),
    )
    if result is None:
        return Reply(204, {"claim_id": None})
    items = [
        render.message(
            m, now, binary=ctx.binary, with_checksum=_checksums(ctx), claim_id=result.id
        )
        for m in result.messages
    ]
    return Reply(201, {"claim_id": result.id, "messages": items})


async def _claim_get(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    found, now = await claims.claim_get(
        ctx.svc, ctx.caller, _source(ctx, body), body["claim_id"]
    )
    return Reply(200, render.claim(found, now, binary=ctx.binary, with_checksum=_checksums(ctx)))


async def _claim_update(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    claim_id = body["claim_id"]
    await claims.claim_renew(
        ctx.svc, ctx.caller, _source(ctx, body), claim_id, _pick(body, "ttl", "grace")
    )
    return Reply(204, f"Claim {claim_id} updated.")


async def _claim_delete(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    claim_id = body["claim_id"]
    await claims.claim_release(ctx.svc, ctx.caller, _source(ctx, body), claim_id)
    return Reply(204, f"Claim {claim_id} deleted.")


# -- subscriptions ---------------------------------------------------------------------


async def _subscription_list(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    query = requests.page(_pick(body, "marker", "limit"))
    found, now = await subscriptions.subscription_list(
        ctx.svc, ctx.caller, _source(ctx, body), marker=query.marker, limit=query.limit
    )
    return Reply(200, {"subscriptions": [render.subscription(s, now) for s in found]})


async def _subscription_create(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    name = _source(ctx, body)
    if not body.get("subscriber"):
        # No subscriber: this connection is subscribed (notify.push).
        held, created = await subscribe_connection(
            ctx.svc,
            ctx.caller,
            name,
            body.get("ttl"),
            body.get("options"),
            ctx.target,
            ctx.binary,
        )
        subscription_id = held.id
    else:
        document = _pick(body, "subscriber", "ttl", "options")
        try:
            subscription_id, created = await subscriptions.subscription_create(
                ctx.svc, ctx.caller, name, document
            )
        except subscriptions.SubscriptionExists:
            created = False
    if not created:
        # Zaqar's WebSocket API answers every duplicate so (HTTP re-confirms some).
        return Reply(409, f"Subscription {name} not created.")
    return Reply(
        201, {"subscription_id": subscription_id, "message": f"Subscription {name} created."}
    )


async def _subscription_get(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    found, now = await subscriptions.subscription_get(
        ctx.svc, ctx.caller, _source(ctx, body), body["subscription_id"]
    )
    return Reply(200, render.subscription(found, now))


async def _subscription_update(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    subscription_id = body["subscription_id"]
    await subscriptions.subscription_update(
        ctx.svc,
        ctx.caller,
        _source(ctx, body),
        subscription_id,
        _pick(body, *subscriptions.UPDATABLE),
    )
    return Reply(204, f"Subscription {subscription_id} updated.")


async def _subscription_delete(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    subscription_id = body["subscription_id"]
    await subscriptions.subscription_delete(
        ctx.svc, ctx.caller, _source(ctx, body), subscription_id
    )
    return Reply(204, f"Subscription {subscription_id} removed.")


async def _subscription_confirm(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    subscription_id = body["subscription_id"]
    document = {"confirmed": body.get("confirmed")}
    await subscriptions.subscription_confirm(
        ctx.svc, ctx.caller, _source(ctx, body), subscription_id, document
    )
    done = "confirmed" if body.get("confirmed") else "cancelled"
    return Reply(204, f"Subscription {subscription_id} {done}.")


async def _subscription_failures(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    found = await subscriptions.subscription_failures(
        ctx.svc,
        ctx.caller,
        _source(ctx, body),
        body["subscription_id"],
        requests.limit(_pick(body, "limit")),
    )
    return Reply(200, {"failures": [render.failure(f) for f in found]})


# -- the server ------------------------------------------------------------------------


async def _home(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    return Reply(200, msgspec.json.decode(home_document(ctx.svc.settings)))


async def _ping(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    if not await health.ping(ctx.svc):
        raise ServiceUnavailable("The store did not answer. Please try again in a few seconds.")
    return Reply(204, {})


async def _health(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    return Reply(200, await health.health(ctx.svc, ctx.caller))


# -- pools and flavors -------------------------------------------------------------------

_SCHEMA_FAILED = Reply(400, {"error": frames.SCHEMA_FAILED})


NamedHandler = Callable[[ActionContext, dict[str, Any], str], Awaitable[Reply]]


def _named(field_name: str) -> Callable[[NamedHandler], Handler]:
    """A pool or flavor action that names its pool or flavor in ``field_name``: a 404
    where pools are not offered, then a schema failure when the frame names none."""

    def wrap(handler: NamedHandler) -> Handler:
        async def run(ctx: ActionContext, body: dict[str, Any]) -> Reply:
            pools.catalog(ctx.svc)
            name = body.get(field_name)
            if not isinstance(name, str):
                return _SCHEMA_FAILED
            return await handler(ctx, body, name)

        return run

    return wrap


async def _pool_list(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    query = requests.admin_listing(_pick(body, "marker", "limit", "detailed"))
    page = await pools.pool_list(ctx.svc, marker=query.marker, limit=query.limit)
    items = [views.pool_view(p, detailed=query.detailed, with_href=False) for p in page.pools]
    return Reply(200, {"pools": items})


@_named("pool_name")
async def _pool_create(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    await pools.pool_put(ctx.svc, name, _pick(body, *pools.FIELDS))
    return Reply(201, f"Pool {name} created.")


@_named("pool_name")
async def _pool_get(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    found = await pools.pool_get(ctx.svc, name)
    detailed = requests.detailed(_pick(body, "detailed"))
    return Reply(200, views.pool_view(found, detailed=detailed, with_href=False))


@_named("pool_name")
async def _pool_update(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    updated = await pools.pool_update(ctx.svc, name, _pick(body, *pools.FIELDS))
    return Reply(200, views.pool_view(updated, detailed=False, with_href=False))


@_named("pool_name")
async def _pool_delete(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    await pools.pool_delete(ctx.svc, name)
    return Reply(204, f"Pool {name} removed.")


def _flavor_document(body: Mapping[str, Any]) -> dict[str, Any]:
    document = _pick(body, *flavors.FIELDS)
    if "pool_list" not in document and isinstance(body.get("pool_name"), str):
        document["pool_list"] = [body["pool_name"]]  # Zaqar's schema names one pool
    return document


async def _flavor_list(ctx: ActionContext, body: dict[str, Any]) -> Reply:
    pools.catalog(ctx.svc)
    query = requests.admin_listing(_pick(body, "marker", "limit", "detailed"))
    page = await flavors.flavor_list(ctx.svc, ctx.caller, marker=query.marker, limit=query.limit)
    items = [
        views.flavor_entry(f, detailed=query.detailed, with_href=False) for f in page.flavors
    ]
    return Reply(200, {"flavors": items})


@_named("flavor_name")
async def _flavor_create(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    await flavors.flavor_put(ctx.svc, ctx.caller, name, _flavor_document(body))
    return Reply(201, f"Flavor {name} created.")


@_named("flavor_name")
async def _flavor_get(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    found = await flavors.flavor_get(ctx.svc, ctx.caller, name)
    return Reply(200, views.flavor_view(found, with_href=False))


@_named("flavor_name")
async def _flavor_update(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    updated = await flavors.flavor_update(ctx.svc, ctx.caller, name, _flavor_document(body))
    return Reply(200, views.flavor_view(updated, with_href=False))


@_named("flavor_name")
async def _flavor_delete(ctx: ActionContext, body: dict[str, Any], name: str) -> Reply:
    await flavors.flavor_delete(ctx.svc, ctx.caller, name)
    return Reply(204, f"Flavor {name} removed.")


# -- the table -------------------------------------------------------------------------

_STR, _INT, _NUMBER, _BOOL, _ARRAY, _OBJECT = (
    Kind.STRING,
    Kind.INTEGER,
    Kind.NUMBER,
    Kind.BOOLEAN,
    Kind.ARRAY,
    Kind.OBJECT,
)


@dataclass(frozen=True, slots=True)
class _Spec:
    """One action of the queue family (also offered on topics unless ``queues_only``)."""

    name: str
    action: Action
    impl: Handler
    fields: Mapping[str, Kind] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    names_source: bool = True
    signed_method: str | None = None
    queues_only: bool = False


_ID = frozenset({"subscription_id"})
_POOL_FIELDS = {
    "pool_name": _STR,
    "uri": _STR,
    "weight": _INT,
    "flavor": _STR,
    "options": _OBJECT,
}
_FLAVOR_FIELDS = {
    "flavor_name": _STR,
    "pool_list": _ARRAY,
    "pool_name": _STR,
    "capabilities": _OBJECT,
}
_SUBSCRIPTION_FIELDS = {"subscriber": _STR, "ttl": _INT, "options": _OBJECT}

_QUEUE_FAMILY = (
    _Spec(
        "queue_list",
        Action.QUEUE_LIST,
        _queue_list,
        {"marker": _STR, "limit": _INT, "detailed": _BOOL, "with_count": _BOOL, "name": _STR},
        names_source=False,
    ),
    _Spec("queue_create", Action.QUEUE_CREATE, _queue_create, {"metadata": _OBJECT}),
    _Spec("queue_get", Action.QUEUE_GET, _queue_get),
    _Spec("queue_delete", Action.QUEUE_DELETE, _queue_delete),
    _Spec("queue_get_stats", Action.QUEUE_STATS, _queue_stats),
    _Spec("queue_purge", Action.QUEUE_PURGE, _queue_purge, {"resource_types": _ARRAY}),
    _Spec(
        "message_list",
        Action.MESSAGE_LIST,
        _message_list,
        {
            "marker": _STR,
            "limit": _INT,
            "echo": _BOOL,
            "include_claimed": _BOOL,
            "include_delayed": _BOOL,
            WAIT: _NUMBER,
        },
        signed_method="GET",
    ),
    _Spec(
        "message_get",
        Action.MESSAGE_GET,
        _message_get,
        {"message_id": _STR},
        frozenset({"message_id"}),
        signed_method="GET",
    ),
    _Spec(
        "message_get_many",
        Action.MESSAGE_GET_MANY,
        _message_get_many,
        {"message_ids": _ARRAY},
        frozenset({"message_ids"}),
        signed_method="GET",
    ),
    _Spec(
        "message_post",
        Action.MESSAGE_POST,
        _message_post,
        {"messages": _ARRAY},
        frozenset({"messages"}),
        signed_method="POST",
    ),
    _Spec(
        "message_delete",
        Action.MESSAGE_DELETE,
        _message_delete,
        {"message_id": _STR, "claim_id": _STR},
        frozenset({"message_id"}),
        signed_method="DELETE",
    ),
    _Spec(
        "message_delete_many",
        Action.MESSAGE_DELETE_MANY,
        _message_delete_many,
        {"message_ids": _ARRAY, "claim_ids": _ARRAY, "pop": _INT},
        signed_method="DELETE",
    ),
    _Spec(
        "claim_create",
        Action.CLAIM_CREATE,
        _claim_create,
        {"limit": _INT, "ttl": _INT, "grace": _INT, WAIT: _NUMBER},
        queues_only=True,
    ),
    _Spec(
        "claim_get",
        Action.CLAIM_GET,
        _claim_get,
        {"claim_id": _STR},
        frozenset({"claim_id"}),
        queues_only=True,
    ),
    _Spec(
        "claim_update",
        Action.CLAIM_UPDATE,
        _claim_update,
        {"claim_id": _STR, "ttl": _INT, "grace": _INT},
        frozenset({"claim_id"}),
        queues_only=True,
    ),
    _Spec(
        "claim_delete",
        Action.CLAIM_DELETE,
        _claim_delete,
        {"claim_id": _STR},
        frozenset({"claim_id"}),
        queues_only=True,
    ),
    _Spec(
        "subscription_list",
        Action.SUBSCRIPTION_LIST,
        _subscription_list,
        {"marker": _STR, "limit": _INT},
    ),
    _Spec(
        "subscription_create",
        Action.SUBSCRIPTION_CREATE,
        _subscription_create,
        _SUBSCRIPTION_FIELDS,
    ),
    _Spec(
        "subscription_get",
        Action.SUBSCRIPTION_GET,
        _subscription_get,
        {"subscription_id": _STR},
        _ID,
    ),
    _Spec(
        "subscription_update",
        Action.SUBSCRIPTION_UPDATE,
        _subscription_update,
        {"subscription_id": _STR, **_SUBSCRIPTION_FIELDS},
        _ID,
    ),
    _Spec(
        "subscription_delete",
        Action.SUBSCRIPTION_DELETE,
        _subscription_delete,
        {"subscription_id": _STR},
        _ID,
    ),
    _Spec(
        "subscription_confirm",
        Action.SUBSCRIPTION_CONFIRM,
        _subscription_confirm,
        {"subscription_id": _STR, "confirmed": Kind.ANY},
        _ID,
    ),
    _Spec(
        "subscription_failures",
        Action.SUBSCRIPTION_FAILURES,
        _subscription_failures,
        {"subscription_id": _STR, "limit": _INT},
        _ID,
    ),
)

_SERVER = (
    _Spec("get_home_doc", Action.HOME, _home, names_source=False),
    _Spec("ping_node", Action.PING, _ping, names_source=False),
    _Spec("check_node_health", Action.HEALTH, _health, names_source=False),
    # Pools and flavors: the names Zaqar's schema requires are checked by the handlers,
    # after the 404 of a server without pools (see the module's docstring).
    _Spec(
        "pool_list",
        Action.POOL_LIST,
        _pool_list,
        {"pool_name": _STR, "marker": _STR, "limit": _INT, "detailed": _BOOL},
        names_source=False,
    ),
    _Spec("pool_create", Action.POOL_CREATE, _pool_create, _POOL_FIELDS, names_source=False),
    _Spec(
        "pool_get",
        Action.POOL_GET,
        _pool_get,
        {"pool_name": _STR, "detailed": _BOOL},
        names_source=False,
    ),
    _Spec("pool_update", Action.POOL_UPDATE, _pool_update, _POOL_FIELDS, names_source=False),
    _Spec(
        "pool_delete", Action.POOL_DELETE, _pool_delete, {"pool_name": _STR}, names_source=False
    ),
    _Spec(
        "flavor_list",
        Action.FLAVOR_LIST,
        _flavor_list,
        {"flavor_name": _STR, "marker": _STR, "limit": _INT, "detailed": _BOOL},
        names_source=False,
    ),
    _Spec(
        "flavor_create", Action.FLAVOR_CREATE, _flavor_create, _FLAVOR_FIELDS, names_source=False
    ),
    _Spec(
        "flavor_get",
        Action.FLAVOR_GET,
        _flavor_get,
        {"flavor_name": _STR, "detailed": _BOOL},
        names_source=False,
    ),
    _Spec(
        "flavor_update", Action.FLAVOR_UPDATE, _flavor_update, _FLAVOR_FIELDS, names_source=False
    ),
    _Spec(
        "flavor_delete",
        Action.FLAVOR_DELETE,
        _flavor_delete,
        {"flavor_name": _STR},
        names_source=False,
    ),
)


def _topic_name(name: str) -> str:
    """queue_create -> topic_create, message_post -> topic_message_post."""
    return "topic_" + name.removeprefix("queue_")


def _build(spec: _Spec, collection: str) -> WsAction:
    fields = MappingProxyType(dict(spec.fields))

    async def handler(ctx: ActionContext, body: dict[str, Any]) -> Reply:
        if not _fits(body, fields, spec.required, spec.names_source, collection):
            return Reply(400, {"error": frames.SCHEMA_FAILED})
        return await spec.impl(ctx, body)

    return WsAction(
        action=spec.action,
        collection=collection,
        handler=handler,
        signed_method=spec.signed_method,
        names_source=spec.names_source,
        fields=fields,
        required=spec.required,
    )


def _table() -> Mapping[str, WsAction]:
    table: dict[str, WsAction] = {}
    for spec in _QUEUE_FAMILY:
        table[spec.name] = _build(spec, "queues")
        if not spec.queues_only:
            table[_topic_name(spec.name)] = _build(spec, "topics")
    for spec in _SERVER:
        table[spec.name] = _build(spec, "queues")
    return MappingProxyType(table)


ACTIONS: Mapping[str, WsAction] = _table()
