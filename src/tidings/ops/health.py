"""Ping and the detailed health self-test.

The self-test runs the operations themselves (not the store underneath), so it covers
what a client's request goes through: validation, encryption, fairness, the store.
Who may run it is admission's decision (``admission.policy``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import msgspec

from tidings.errors import ServiceUnavailable, TidingsError, cause_chain
from tidings.model import ClaimResult
from tidings.ops import claims, messages, queues
from tidings.ops.context import Caller, Services
from tidings.ops.validation import check_queue_name
from tidings.pooling.router import PooledStorage

log = logging.getLogger("tidings.health")

HEALTH_MESSAGES = 10
HEALTH_MESSAGE_TTL = 300
HEALTH_CLAIM = {"ttl": 60, "grace": 60}
# The steps in the order Zaqar reports them.
STEPS = (
    "create_queue",
    "post_messages",
    "claim_messages",
    "list_messages",
    "delete_messages",
    "delete_claim",
    "bulk_delete_messages",
    "delete_queue",
)
# The self-test writes to the store: one runs at a time per worker, and its report is
# reused for this many seconds, so repeated health calls cannot load the writer.
HEALTH_REUSE_SECONDS = 5.0


# A store's checks (self-test and message volume) as health reports them, and the
# problems they found.
Checks = tuple[dict[str, Any], list[str]]


class _SelfTestGate:
    """One self-test at a time per process and store, and a recent report reused."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.report: Checks | None = None  # as last run
        self.taken = 0.0

    def recent(self) -> Checks | None:
        if self.report is not None and time.monotonic() - self.taken < HEALTH_REUSE_SECONDS:
            return self.report
        return None

    def keep(self, report: Checks) -> None:
        self.report, self.taken = report, time.monotonic()


# By store: "" for the message store, a pool's name in pooled mode. Bounded by the
# catalog's MAX_POOLS.
_gates: dict[str, _SelfTestGate] = {}


async def ping(svc: Services) -> bool:
    return await svc.storage.ping()


async def health(svc: Services, caller: Caller) -> dict[str, Any]:
    """Run each message operation once on a throw-away queue and time each."""
    queue = f"_health_{uuid.uuid4().hex[:16]}"
    check_queue_name(caller.project, queue)  # the project id's length, as everywhere
    if isinstance(svc.storage, PooledStorage):
        return await _pooled_health(svc, svc.storage, caller, queue)
    store = await svc.storage.status()
    if not store.reachable:
        raise ServiceUnavailable("Health status could not be read.")
    checks, problems = await _reused_checks("", svc, caller, queue)
    # "problems" is ours: e.g. a Redis that came back empty, which Zaqar never notices.
    return {"storage_reachable": True, **checks, "problems": store.problems + problems}


async def _pooled_health(
    svc: Services, pooled: PooledStorage, caller: Caller, queue: str
) -> dict[str, Any]:
    """Zaqar's pooled shape: ``catalog_reachable``, then one entry per pool, each with
    its own self-test run on that pool's store directly (not through the catalog)."""
    catalog = await pooled.management.status()
    statuses = await pooled.pool_statuses()
    stores = dict(pooled.open_pools())
    report: dict[str, Any] = {"catalog_reachable": catalog.reachable}
    if catalog.problems:
        report["problems"] = catalog.problems

    async def one(name: str) -> dict[str, Any]:
        status, store = statuses[name], stores.get(name)
        entry: dict[str, Any] = {"storage_reachable": status.reachable}
        problems = list(status.problems)
        if status.reachable and store is not None:
            on_pool = replace(svc, storage=store)
            checks, found = await _reused_checks(name, on_pool, caller, queue)
            entry.update(checks)
            problems.extend(found)
        entry["problems"] = problems
        return entry

    names = [name for name in statuses if name]  # the virtual pool is no pool (Zaqar)
    for name, entry in zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True):
        report[name] = entry
    return report


async def _reused_checks(key: str, svc: Services, caller: Caller, queue: str) -> Checks:
    """The store's self-test and message volume, reused while recent."""
    gate = _gates.setdefault(key, _SelfTestGate())
    async with gate.lock:
        report = gate.recent()
        if report is None:
            status = await _self_test(svc, caller, queue)
            volume, problems = await _volume(svc)  # after: the test's queue is gone
            report = ({"operation_status": status, **volume}, problems)
            gate.keep(report)
    return dict(report[0]), list(report[1])


async def _volume(svc: Services) -> Checks:
    """Zaqar's ``message_volume`` (free, claimed, total), with whether every queue was
    counted (the count is bounded: see ``Storage.message_volume``)."""
    try:
        volume = await svc.storage.message_volume(svc.clock())
    except TidingsError as exc:
        log.warning("health could not count messages: %s", cause_chain(exc))
        return {}, [f"the messages could not be counted: {exc}"]
    counts = {"free": volume.free, "claimed": volume.claimed, "total": volume.total}
    return {"message_volume": counts, "message_volume_complete": volume.complete}, []


class _Run:
    """One self-test: the state its steps share and what each step reported."""

    def __init__(self, svc: Services, caller: Caller, queue: str) -> None:
        self.svc, self.caller, self.queue = svc, caller, queue
        limits = svc.settings.transport
        # Within every per-request limit an operator may have lowered.
        self.count = min(
            HEALTH_MESSAGES,
            limits.max_messages_per_post,
            limits.max_messages_per_claim_or_pop,
            limits.max_messages_per_page,
        )
        self.ids: list[str] = []
        self.claim: ClaimResult | None = None
        self.status: dict[str, dict[str, Any]] = {}

    async def step(self, name: str, action: Callable[[], Awaitable[Any]]) -> None:
        started = time.perf_counter()
        ref: str | None = None
        try:
            await action()
        except TidingsError as exc:  # expected (e.g. the store is down): its causes
            ref = str(uuid.uuid4())
            log.warning("health self-test step %s failed (ref %s): %s", name, ref, cause_chain(exc))
        except Exception:  # every failure is reported, not raised, and logged by its ref
            ref = str(uuid.uuid4())
            log.exception("health self-test step %s failed (ref %s)", name, ref)
        self.status[name] = {
            "succeeded": ref is None,
            "seconds": time.perf_counter() - started,
            "ref": ref,
        }

    async def post(self) -> None:
        # An explicit delay of 0: the messages are claimable at once whatever the
        # queue's default delay.
        item = messages.MessageIn(
            msgspec.Raw(b'{"health": true}'), ttl=HEALTH_MESSAGE_TTL, delay=0
        )
        self.ids = await messages.message_post(
            self.svc, self.caller, self.queue, [item] * self.count, None
        )

    async def claim_messages(self) -> None:
        self.claim, _ = await claims.claim_create(
            self.svc, self.caller, self.queue, HEALTH_CLAIM, self.count
        )

    async def listing(self) -> None:
        await messages.message_list(
            self.svc,
            self.caller,
            self.queue,
            limit=self.count,
            echo=True,
            include_claimed=True,
            include_delayed=True,
        )

    async def delete_one(self) -> None:
        if self.claim is not None and self.claim.messages:
            first = self.claim.messages[0]
            await messages.message_delete(
                self.svc, self.caller, self.queue, first.id, self.claim.id
            )

    async def bulk_delete(self) -> None:
        # Under the claim, so it also passes where deletes must name their claim.
        claim_ids = [self.claim.id] if self.claim is not None else None
        await messages.message_delete_many(
            self.svc, self.caller, self.queue, self.ids, claim_ids
        )

    async def release(self) -> None:
        if self.claim is not None:
            await claims.claim_release(self.svc, self.caller, self.queue, self.claim.id)


async def _self_test(svc: Services, caller: Caller, queue: str) -> dict[str, Any]:
    run = _Run(svc, caller, queue)
    try:
        await run.step(
            "create_queue", lambda: queues.queue_create(svc, caller, queue, None)
        )
        await run.step("post_messages", run.post)
        await run.step("claim_messages", run.claim_messages)
        await run.step("list_messages", run.listing)
        await run.step("delete_messages", run.delete_one)
        # Bulk delete goes before the release: with message_delete_with_claim_id, only
        # messages held by the claim may be deleted in bulk.
        await run.step("bulk_delete_messages", run.bulk_delete)
        await run.step("delete_claim", run.release)
    finally:
        await run.step("delete_queue", lambda: queues.queue_delete(svc, caller, queue))
    return {name: run.status[name] for name in STEPS if name in run.status}
