"""Push to WebSocket connections: subscriptions held by a connection, fed by the outbox.

``subscription_create`` without a subscriber over WebSocket subscribes the connection
itself: a subscription whose subscriber is ``websocket://<node id>/<connection id>``,
created confirmed. Posts fan out to it like to any subscription (the durable outbox);
the dispatcher of whichever node takes the delivery hands it to ``PushSender``, which
gives the frame to the connection when it lives on this node and otherwise relays it
through the store's change feed (``storage.feed.relay``) to the node that holds it.

Such a subscription is stored with its ttl capped to ``[websocket] push_lease``
seconds, which this node's ``PushRegistry`` renews while the connection lives (until
the ttl the client asked for ends), so the subscriptions of a node that died expire by
themselves within a lease; a connection that closes deletes its own at once. Listing
or getting such a subscription shows the stored ttl (at most the lease) and its age
since the last renewal, not the ttl the client asked for.

For the WebSocket transport (ws/session.py): a session implements ``PushTarget``;
call ``svc.push.register(session)`` when the connection opens and
``svc.push.connection_closed(session.connection_id)`` when it ends, however it ends
(a subscribe on a connection not registered, or closed already, raises 503).

For the actions (ws/actions.py), ``subscription_create`` without ``subscriber``::

    subscription, created = await subscribe_connection(
        ctx.svc, ctx.caller, queue_name, body.get("ttl"), body.get("options"),
        ctx.target, ctx.binary)

``created`` is False when this connection already holds a push subscription to that
queue (answer 409 "Subscription <queue> not created."). Bad input raises the same
``TidingsError`` (400) as the HTTP operation; a store failure ``ServiceUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec

from tidings.errors import ServiceUnavailable, StorageError
from tidings.model import Delivery, DeliveryKind, Subscription
from tidings.namespace import split_namespace
from tidings.notify import payloads
from tidings.notify.senders import DeliveryError
from tidings.ops.context import Caller, Services
from tidings.ops.subscriptions import push_subscription_create
from tidings.storage.base import Storage

log = logging.getLogger("tidings.push")

SCHEME = "websocket"
# Deliveries held per connection while one of its subscriptions is being created (a
# post racing the create may be taken before the registry knows the new id).
MAX_WAITING = 64
# Renewals (store writes) in flight at once.
RENEW_CONCURRENCY = 16
# How long closing the registry waits for its deletions.
CLOSE_TIMEOUT = 5.0
# Bytes relayed to a node in one payload at most (the change feed carries about
# 300 KiB): each document once, plus about RELAY_OVERHEAD per push (ids, framing); a
# larger document goes alone.
RELAY_BATCH_BYTES = 192 * 1024
RELAY_OVERHEAD = 128

# (connection id, subscription id, stored project, notification document)
_Push = tuple[str, str, str, bytes]


class _RelayedBatch(msgspec.Struct, array_like=True):
    """Pushes relayed together: each document once, each push naming its by index."""

    documents: list[bytes]
    pushes: list[tuple[str, str, str, int]]


class PushTarget(Protocol):
    """A connection frames can be pushed to (a WebSocket session implements it)."""

    connection_id: str
    # The authenticated project, or None when every frame names its own (noauth).
    project: str | None

    def send_frame(self, frame: str | bytes) -> bool:
        """Queue a frame without blocking; False when the connection is closed or its
        send queue overflowed (which closes it with 1008)."""


def subscriber_for(node_id: str, connection_id: str) -> str:
    return f"{SCHEME}://{node_id}/{connection_id}"


@functools.lru_cache(maxsize=4096)
def parse_subscriber(subscriber: str) -> tuple[str, str] | None:
    """(node id, connection id) of a push subscriber; None when it is not one."""
    parts = urlsplit(subscriber)
    connection = parts.path.lstrip("/")
    if parts.scheme != SCHEME or not parts.netloc or not connection or "/" in connection:
        return None
    return parts.netloc, connection


def encode_frame(document: bytes, binary: bool) -> str | bytes:
    """The notification as a frame: JSON text, or MessagePack when ``binary`` (text
    still when the body holds what MessagePack cannot, an integer past 64 bits)."""
    if binary:
        with contextlib.suppress(OverflowError):
            return msgspec.msgpack.encode(msgspec.json.decode(document))
    return document.decode()


@dataclass(slots=True)
class _Held:
    """A push subscription this node keeps alive for one of its connections."""

    project: str  # as stored (topics carry their namespace)
    source: str
    binary: bool
    ends: float  # when the ttl the client asked for runs out
    expires: float  # the stored expiry (renewed up to ``ends``)


@dataclass(slots=True)
class _Connection:
    target: PushTarget
    held: dict[str, _Held] = field(default_factory=dict)
    creating: int = 0  # subscriptions being created
    # (subscription id, stored project, notification) taken while creating.
    waiting: list[tuple[str, str, bytes]] = field(default_factory=list)


class PushRegistry:
    """This process's connections and the push subscriptions they hold (one per process).

    ``start`` (after the store opened) installs the relay handler and the lease renewal;
    ``close`` (before the store closes) deletes what live connections still hold.
    """

    def __init__(self, storage: Storage, lease: int, clock: Callable[[], float]) -> None:
        self._storage = storage
        self.lease = lease
        self._clock = clock
        self._connections: dict[str, _Connection] = {}
        self._node_id: str | None = None
        self._relays_heard = False
        self._renewal: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = self._storage.feed.node_id
        return self._node_id

    def start(self) -> None:
        self._node_id = self._storage.feed.node_id
        self._renewal = asyncio.create_task(self._renew_forever(), name="tidings-push-lease")

    async def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        for connection_id in list(self._connections):
            self.connection_closed(connection_id)
        if self._background:
            await asyncio.wait(self._background, timeout=CLOSE_TIMEOUT)

    # -- connections ---------------------------------------------------------------

    def register(self, target: PushTarget) -> None:
        self._connections.setdefault(target.connection_id, _Connection(target))

    def connection_closed(self, connection_id: str) -> None:
        """Forget the connection and delete its subscriptions in the background (best
        effort: what is not deleted expires within a lease)."""
        connection = self._connections.pop(connection_id, None)
        if connection is not None and connection.held:
            self._in_background(self._delete(dict(connection.held)))

    def subscriber_of(self, target: PushTarget) -> str:
        return subscriber_for(self.node_id, target.connection_id)

    def held(self, connection_id: str) -> dict[str, str]:
        """Subscription id -> source of the push subscriptions a connection holds."""
        connection = self._connections.get(connection_id)
        return {} if connection is None else {k: v.source for k, v in connection.held.items()}

    # -- delivering ----------------------------------------------------------------

    def deliver_many(self, pushes: Iterable[_Push]) -> None:
        """``deliver`` each, encoding each document once per encoding."""
        frames: dict[tuple[bytes, bool], str | bytes] = {}
        for connection_id, subscription_id, project, document in pushes:
            self.deliver(connection_id, subscription_id, project, document, frames)

    def deliver(
        self,
        connection_id: str,
        subscription_id: str,
        project: str,
        document: bytes,
        frames: dict[tuple[bytes, bool], str | bytes] | None = None,
    ) -> None:
        """Hand a notification to a connection of this node; what it does not hold (a
        closed connection, a deleted subscription, another project) is dropped.
        ``frames`` keeps the frames encoded so far, for a batch sharing documents."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return
        held = connection.held.get(subscription_id)
        if held is None:
            if connection.creating and len(connection.waiting) < MAX_WAITING:
                connection.waiting.append((subscription_id, project, document))
            return
        target = connection.target
        if held.project != project or (
            target.project is not None and split_namespace(project)[0] != target.project
        ):
            log.warning("dropped a push to %s for a project it does not hold", connection_id)
            return
        key = (document, held.binary)
        frame = None if frames is None else frames.get(key)
        if frame is None:
            try:
                frame = encode_frame(document, held.binary)
            except (msgspec.DecodeError, UnicodeDecodeError):
                log.warning("dropped an unreadable push to %s", connection_id)
                return
            if frames is not None:
                frames[key] = frame
        target.send_frame(frame)  # False: the connection is closing; nothing to keep

    def _relayed(self, payload: bytes) -> None:
        try:
            pushes = _decode_relayed(payload)
        except msgspec.DecodeError:
            log.warning("dropped a relayed push that is not one")
            return
        self.deliver_many(pushes)

    # -- subscriptions -------------------------------------------------------------

    async def subscribe(
        self,
        svc: Services,
        caller: Caller,
        source: str,
        ttl: Any,
        options: Any,
        target: PushTarget,
        binary: bool,
    ) -> tuple[Subscription, bool]:
        connection = self._connections.get(target.connection_id)
        if connection is None:
            # Never registered, or closed already: holding a subscription for it would
            # keep one alive that nobody reads.
            raise ServiceUnavailable("The connection is closing.")
        if not self._relays_heard:
            # Relays name a node only once it holds a push subscription: until then it
            # need not listen (an SQLite feed's poller stays parked).
            self._storage.feed.on_relay(self._relayed)
            self._relays_heard = True
        connection.creating += 1
        try:
            subscription, created, requested = await push_subscription_create(
                svc,
                caller,
                source,
                subscriber=self.subscriber_of(target),
                ttl=ttl,
                options=options,
                lease=self.lease,
            )
            if created:
                self._hold(target.connection_id, caller.project, subscription, requested, binary)
        finally:
            connection.creating -= 1
            if not connection.creating:
                waiting, connection.waiting = connection.waiting, []
                for subscription_id, project, document in waiting:
                    self.deliver(target.connection_id, subscription_id, project, document)
        # The client sees the ttl it asked for.
        view = msgspec.structs.replace(
            subscription, ttl=requested, expires=subscription.updated + requested
        )
        return view, created

    def _hold(
        self, connection_id: str, project: str, subscription: Subscription, ttl: int, binary: bool
    ) -> None:
        held = _Held(project, subscription.source, binary, subscription.updated + ttl, 0.0)
        held.expires = subscription.expires
        connection = self._connections.get(connection_id)
        if connection is None:  # closed while the subscription was being created
            self._in_background(self._delete({subscription.id: held}))
            return
        connection.held[subscription.id] = held

    async def _delete(self, held: dict[str, _Held]) -> None:
        for subscription_id, h in held.items():
            try:
                await self._storage.subscriptions.delete(h.project, h.source, subscription_id)
            except Exception as exc:  # it expires within a lease anyway
                log.warning("cannot delete push subscription %s: %s", subscription_id, exc)

    def _in_background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _renew_forever(self) -> None:
        """Renew every third of a lease, so a renewal may fail twice before one lapses."""
        interval = max(self.lease / 3, 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception:  # the renewal must never stop
                log.exception("renewing push subscriptions failed; will retry")

    async def renew(self) -> None:
        now = self._clock()
        due: list[tuple[str, str, _Held]] = []
        for connection_id, connection in list(self._connections.items()):
            for subscription_id, held in list(connection.held.items()):
                if held.ends <= now:
                    del connection.held[subscription_id]  # its own ttl ran out
                elif held.expires < held.ends and held.expires - now <= self.lease * 5 / 6:
                    due.append((connection_id, subscription_id, held))
        limit = asyncio.Semaphore(RENEW_CONCURRENCY)

        async def renew_one(connection_id: str, subscription_id: str, held: _Held) -> None:
            ttl = max(1, math.ceil(min(self.lease, held.ends - now)))
            async with limit:
                try:
                    renewed = await self._storage.subscriptions.update(
                        held.project, held.source, subscription_id, now, ttl=ttl
                    )
                except StorageError as exc:
                    log.warning("cannot renew push subscription %s: %s", subscription_id, exc)
                    return
            connection = self._connections.get(connection_id)
            if renewed is None:  # deleted by its client, or lapsed during an outage
                if connection is not None:
                    connection.held.pop(subscription_id, None)
            else:
                held.expires = renewed.expires

        await asyncio.gather(*(renew_one(*item) for item in due))


async def subscribe_connection(
    svc: Services,
    caller: Caller,
    source: str,
    ttl: Any,
    options: Any,
    target: PushTarget,
    binary: bool,
) -> tuple[Subscription, bool]:
    """Subscribe ``target`` to the queue (see the module's docstring)."""
    if svc.push is None:
        raise ServiceUnavailable("Push to WebSocket connections is not available.")
    return await svc.push.subscribe(svc, caller, source, ttl, options, target, binary)


class PushSender:
    """The dispatcher's sender for ``websocket://`` subscribers (a ``BatchSender``: the
    dispatcher hands it a round's pushes at once, and those for another node go there
    in as few relays as fit ``RELAY_BATCH_BYTES``)."""

    def __init__(self, registry: PushRegistry, storage: Storage) -> None:
        self._registry = registry
        self._storage = storage

    async def send(self, delivery: Delivery) -> None:
        (error,) = await self.send_batch([delivery])
        if error is not None:
            raise error

    async def send_batch(self, deliveries: Sequence[Delivery]) -> list[DeliveryError | None]:
        outcomes: list[DeliveryError | None] = [None] * len(deliveries)
        remote: dict[str, list[tuple[int, _Push]]] = {}
        local: list[_Push] = []
        documents: dict[tuple[str, str, str | None], bytes] = {}  # one per message
        here = self._registry.node_id
        for index, delivery in enumerate(deliveries):
            if delivery.kind is not DeliveryKind.NOTIFICATION:
                continue  # a connection needs no (un)subscribe confirmation: dropped
            address = parse_subscriber(delivery.subscriber)
            if address is None:
                outcomes[index] = DeliveryError(
                    f"{delivery.subscriber} is not a push subscriber", retryable=False
                )
                continue
            node, connection_id = address
            key = (delivery.project, delivery.source, delivery.message_id)
            document = documents.get(key)
            if document is None:
                try:
                    document = documents[key] = payloads.notification(delivery)
                except ValueError as exc:  # a body still sealed: a bug, not sent that way
                    outcomes[index] = DeliveryError(str(exc), retryable=True)
                    continue
            push = (connection_id, delivery.subscription_id, delivery.project, document)
            if node == here:
                local.append(push)
            else:
                remote.setdefault(node, []).append((index, push))
        self._registry.deliver_many(local)
        failures = await asyncio.gather(
            *(self._relay(node, pushes) for node, pushes in remote.items())
        )
        for failed in failures:
            for index, error in failed:
                outcomes[index] = error
        return outcomes

    async def _relay(
        self, node: str, pushes: list[tuple[int, _Push]]
    ) -> list[tuple[int, DeliveryError]]:
        """Relay to one node, in order, a batch at a time; the pushes that failed."""
        failed: list[tuple[int, DeliveryError]] = []
        for batch in _batches(pushes):
            try:
                await self._storage.feed.relay(node, _encode_relayed([p for _, p in batch]))
            except StorageError as exc:
                error = DeliveryError(f"cannot relay to node {node}: {exc}", retryable=True)
                failed += [(index, error) for index, _ in batch]
        return failed

    async def close(self) -> None:
        return None


_decode_one = msgspec.msgpack.Decoder(_Push).decode
_decode_batch = msgspec.msgpack.Decoder(_RelayedBatch).decode


def _encode_relayed(pushes: list[_Push]) -> bytes:
    """One push as a 4-array; several as a ``_RelayedBatch`` sharing their documents."""
    if len(pushes) == 1:
        return msgspec.msgpack.encode(pushes[0])
    documents: list[bytes] = []
    numbered: dict[int, int] = {}  # id of a document -> its index
    named = []
    for connection_id, subscription_id, project, document in pushes:
        number = numbered.setdefault(id(document), len(documents))
        if number == len(documents):
            documents.append(document)
        named.append((connection_id, subscription_id, project, number))
    return msgspec.msgpack.encode(_RelayedBatch(documents, named))


def _decode_relayed(payload: bytes) -> list[_Push]:
    """The pushes of a relayed payload (raises ``msgspec.DecodeError`` when it holds none)."""
    try:
        return [_decode_one(payload)]
    except msgspec.ValidationError:
        batch = _decode_batch(payload)
    count = len(batch.documents)
    if any(not 0 <= number < count for *_, number in batch.pushes):
        raise msgspec.ValidationError("a relayed push names a document the batch lacks")
    return [
        (connection_id, subscription_id, project, batch.documents[number])
        for connection_id, subscription_id, project, number in batch.pushes
    ]


def _batches(pushes: list[tuple[int, _Push]]) -> list[list[tuple[int, _Push]]]:
    """Consecutive runs of pushes costing at most RELAY_BATCH_BYTES each (a push with a
    larger document alone), a document counted once per run."""
    batches: list[list[tuple[int, _Push]]] = []
    size, seen = RELAY_BATCH_BYTES, set[int]()
    for item in pushes:
        document = item[1][3]
        cost = RELAY_OVERHEAD + (0 if id(document) in seen else len(document))
        if size + cost > RELAY_BATCH_BYTES:
            batches.append([])
            size, seen = 0, set()
            cost = RELAY_OVERHEAD + len(document)
        batches[-1].append(item)
        seen.add(id(document))
        size += cost
    return batches
