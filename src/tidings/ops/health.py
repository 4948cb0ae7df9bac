"""Ping and the detailed health self-test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.errors import Forbidden, ServiceUnavailable
from tidings.model import ClaimRequest, NewMessage
from tidings.ops.context import Caller, Services
from tidings.ops.validation import check_queue_name

HEALTH_MESSAGES = 10
# The self-test writes to the store: one runs at a time per worker, and its report is
# reused for this many seconds, so repeated health calls cannot load the writer.
HEALTH_REUSE_SECONDS = 5.0


class _SelfTestGate:
    """One self-test at a time per process, and a recent report reused."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.report: dict[str, Any] | None = None  # operation_status of the last run
        self.taken = 0.0

    def recent(self) -> dict[str, Any] | None:
        if self.report is not None and time.monotonic() - self.taken < HEALTH_REUSE_SECONDS:
            return self.report
        return None

    def keep(self, report: dict[str, Any]) -> None:
        self.report, self.taken = report, time.monotonic()


_gate = _SelfTestGate()


async def ping(svc: Services) -> bool:
    return await svc.storage.ping()


async def health(svc: Services, caller: Caller) -> dict[str, Any]:
    """Run every storage operation once on a throw-away queue and time each."""
    if "admin" not in caller.roles:
        raise Forbidden()
    queue = f"_health_{uuid.uuid4().hex[:16]}"
    check_queue_name(caller.project, queue)  # the project id's length, as everywhere
    store = await svc.storage.status()
    if not store.reachable:
        raise ServiceUnavailable("Health status could not be read.")
    async with _gate.lock:
        status = _gate.recent()
        if status is None:
            status = await _self_test(svc, caller, queue)
            _gate.keep(status)
    # "problems" is ours: e.g. a Redis that came back empty, which Zaqar never notices.
    return {"storage_reachable": True, "operation_status": status, "problems": store.problems}


async def _self_test(svc: Services, caller: Caller, queue: str) -> dict[str, Any]:
    storage = svc.storage
    project = caller.project
    state: dict[str, Any] = {"ids": [], "claim": None}
    status: dict[str, dict[str, Any]] = {}

    async def step(name: str, action: Callable[[], Awaitable[Any]]) -> None:
        started = time.perf_counter()
        try:
            await action()
        except Exception:  # every failure is reported, not raised
            status[name] = {
                "succeeded": False,
                "seconds": time.perf_counter() - started,
                "ref": str(uuid.uuid4()),
            }
        else:
            status[name] = {
                "succeeded": True,
                "seconds": time.perf_counter() - started,
                "ref": None,
            }

    async def post() -> None:
        batch = [NewMessage(body=b'{"health": true}', ttl=300)] * HEALTH_MESSAGES
        state["ids"] = await storage.messages.post(
            project, queue, lambda _metadata: batch, caller.client_id, svc.clock()
        )

    async def claim() -> None:
        state["claim"] = await storage.claims.create(
            project, queue, ClaimRequest(ttl=60, grace=60, limit=10), svc.clock()
        )

    async def listing() -> None:
        await storage.messages.page(
            project,
            queue,
            marker=None,
            limit=10,
            exclude_client=None,
            include_claimed=True,
            include_delayed=True,
            now=svc.clock(),
        )

    async def delete_one() -> None:
        result = state["claim"]
        if result is not None:
            first = result.messages[0]
            await storage.messages.delete(project, queue, first.id, result.id, svc.clock())

    async def release() -> None:
        if state["claim"] is not None:
            await storage.claims.release(project, queue, state["claim"].id, svc.clock())

    async def bulk_delete() -> None:
        await storage.messages.delete_many(project, queue, state["ids"][:20], None, svc.clock())

    try:
        await step("create_queue", lambda: storage.queues.create(project, queue, {}, svc.clock()))
        await step("post_messages", post)
        await step("claim_messages", claim)
        await step("list_messages", listing)
        await step("delete_messages", delete_one)
        await step("delete_claim", release)
        await step("bulk_delete_messages", bulk_delete)
    finally:
        await step("delete_queue", lambda: storage.queues.delete(project, queue))
    return status
