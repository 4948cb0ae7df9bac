"""Claim operations: create, get, renew, release."""

from __future__ import annotations

from typing import Any

import msgspec

from tidings import encryption
from tidings.errors import InvalidBody, NotFound
from tidings.model import Claim, ClaimRequest, ClaimResult
from tidings.observe import metrics
from tidings.ops import metadata as reserved
from tidings.ops import waiting
from tidings.ops.context import Caller, Services, client_project, unavailable_as
from tidings.ops.validation import (
    EMPTY_BODY,
    check_claim_grace,
    check_claim_ttl,
    check_page_limit,
    check_queue_name,
    integer_field,
    require_object,
)


def _lifetimes(svc: Services, document: Any) -> tuple[int, int]:
    limits = svc.settings.transport
    body = {} if document is None else require_object(document)
    ttl = integer_field(body, "ttl")
    grace = integer_field(body, "grace")
    return (
        limits.default_claim_ttl if ttl is None else ttl,
        limits.default_claim_grace if grace is None else grace,
    )


def _keyring(svc: Services) -> encryption.Keyring:
    return encryption.keyring(svc.settings.transport)


def claim_not_found(queue: str, claim_id: str, caller: Caller) -> NotFound:
    return NotFound(
        f"Claim {claim_id} does not exist in queue {queue} for project {client_project(caller)}"
    )


@unavailable_as("Claim could not be created.")
async def claim_create(
    svc: Services,
    caller: Caller,
    queue: str,
    document: Any,
    limit: int | None = None,
    wait: float | None = None,
) -> tuple[ClaimResult | None, float]:
    """Claim the oldest claimable messages; (None, now) when there were none.

    With ``wait`` (seconds), none found waits for some, up to then (``ops.waiting``).
    """
    check_queue_name(caller.project, queue)
    limits = svc.settings.transport
    if limit is None:
        limit = min(10, limits.max_messages_per_claim_or_pop)
    check_page_limit(limit, limits.max_messages_per_claim_or_pop)
    ttl, grace = _lifetimes(svc, document)
    check_claim_ttl(ttl, limits)
    check_claim_grace(grace, limits)
    waiting.check_wait(wait)
    return await claim_messages(
        svc, caller, queue, ClaimRequest(ttl=ttl, grace=grace, limit=limit), wait
    )


@unavailable_as("Claim could not be created.")
async def claim_messages(
    svc: Services,
    caller: Caller,
    queue: str,
    request: ClaimRequest,
    wait: float | None = None,
) -> tuple[ClaimResult | None, float]:
    """Claim what ``request`` asks for, waiting up to ``wait`` seconds for messages, under
    the queue's dead-letter policy; (None, now) when there were none.

    The store and long-polling part of a claim, without Zaqar's range checks: the caller
    has checked the request (Zaqar's claim_create above; SQS's ReceiveMessage, whose
    VisibilityTimeout may be shorter than Zaqar's 60 s minimum).
    """

    async def attempt() -> tuple[ClaimResult | None, float]:
        now = svc.clock()
        # The store applies the dead-letter policy in force at the claim (None for a queue
        # that does not exist), without a metadata read of its own where it can.
        result = await svc.storage.claims.create(
            caller.project, queue, request, now, reserved.dead_letter_policy
        )
        if result is None:
            return None, now
        opened = _keyring(svc).open_messages(result.messages, caller.project)
        return msgspec.structs.replace(result, messages=opened), now

    async def release(claimed: tuple[ClaimResult | None, float]) -> None:
        if claimed[0] is not None:
            await svc.storage.claims.release(caller.project, queue, claimed[0].id, svc.clock())

    limit = request.limit
    claimed = await waiting.wait_for(
        svc,
        caller.project,
        queue,
        waiting.Kind.CLAIM,
        wait,
        attempt,
        found=lambda claimed: claimed[0] is not None,
        undo=release,
        # Fewer than asked for: the queue had no more claimable then.
        full=lambda claimed: claimed[0] is not None and len(claimed[0].messages) >= limit,
    )
    if claimed[0] is not None:
        metrics.messages_claimed(len(claimed[0].messages))
    return claimed


@unavailable_as("Claim could not be queried.")
async def claim_get(
    svc: Services, caller: Caller, queue: str, claim_id: str
) -> tuple[Claim, float]:
    check_queue_name(caller.project, queue)
    now = svc.clock()
    claim = await svc.storage.claims.get(caller.project, queue, claim_id, now)
    if claim is None:
        raise claim_not_found(queue, claim_id, caller)
    opened = _keyring(svc).open_messages(claim.messages, caller.project)
    return msgspec.structs.replace(claim, messages=opened), now


@unavailable_as("Claim could not be updated.")
async def claim_renew(
    svc: Services, caller: Caller, queue: str, claim_id: str, document: Any
) -> None:
    check_queue_name(caller.project, queue)
    if document is None:
        raise InvalidBody(EMPTY_BODY)
    ttl, grace = _lifetimes(svc, document)
    # Zaqar checks only ttl on renew and stores any grace: a huge or negative one breaks
    # the claim's expiry arithmetic. Its lower bound stays lenient (0, not 60) for clients
    # that renew with a small grace, which Zaqar accepts.
    check_claim_ttl(ttl, svc.settings.transport)
    check_claim_grace(grace, svc.settings.transport, minimum=0)
    if not await claim_extend(svc, caller, queue, claim_id, ttl, grace):
        raise claim_not_found(queue, claim_id, caller)


@unavailable_as("Claim could not be deleted.")
async def claim_release(svc: Services, caller: Caller, queue: str, claim_id: str) -> None:
    check_queue_name(caller.project, queue)
    await svc.storage.claims.release(caller.project, queue, claim_id, svc.clock())


@unavailable_as("Claim could not be updated.")
async def claim_extend(
    svc: Services, caller: Caller, queue: str, claim_id: str, ttl: int, grace: int = 0
) -> bool:
    """Restart a live claim with ``ttl`` seconds from now; False when it is not live.

    Without range checks: the caller's own apply (Zaqar's claim_renew above; SQS's
    ChangeMessageVisibility allows 1 second); the store bounds what it keeps.
    """
    check_queue_name(caller.project, queue)
    return await svc.storage.claims.renew(caller.project, queue, claim_id, ttl, grace, svc.clock())
