"""Request bodies: how much each action reads, its size rule, and one way to decode.

A transport reads at most ``read_limit`` bytes of a body (plus one, to tell an oversize
body), hands over those bytes and the size the client declared, and gets the document.
Message posts are the exception: their size limit depends on the queue's metadata, so
``ops.messages.message_post`` checks the size and decodes (with the same decoder).
"""

from __future__ import annotations

from typing import Any

from tidings.admission.actions import Action
from tidings.errors import InvalidBody
from tidings.ops import queues, subscriptions
from tidings.ops.context import Services
from tidings.ops.validation import decode_json

# Claim and confirmation bodies hold a couple of small fields.
SMALL_BODY_LIMIT = 4096
# Pool and flavor bodies: a URI and a few options, or a list of (at most 1000) pool names.
ADMIN_BODY_LIMIT = 65536

_METADATA_ACTIONS = frozenset({Action.QUEUE_CREATE, Action.QUEUE_UPDATE})
_SMALL_ACTIONS = frozenset(
    {Action.CLAIM_CREATE, Action.CLAIM_UPDATE, Action.SUBSCRIPTION_CONFIRM}
)
_SUBSCRIPTION_ACTIONS = frozenset({Action.SUBSCRIPTION_CREATE, Action.SUBSCRIPTION_UPDATE})
_ADMIN_ACTIONS = frozenset(
    {Action.POOL_CREATE, Action.POOL_UPDATE, Action.FLAVOR_CREATE, Action.FLAVOR_UPDATE}
)
# Actions whose request has a body; any other action ignores one.
BODY_ACTIONS = frozenset(
    {
        *_METADATA_ACTIONS,
        *_SMALL_ACTIONS,
        *_SUBSCRIPTION_ACTIONS,
        *_ADMIN_ACTIONS,
        Action.QUEUE_PURGE,
        Action.QUEUE_SHARE,
        Action.MESSAGE_POST,
    }
)


def read_limit(svc: Services, action: Action) -> int:
    """The most body bytes worth reading for this action."""
    limits = svc.settings.transport
    if action is Action.MESSAGE_POST:
        return limits.max_messages_post_size
    if action in _SMALL_ACTIONS:
        return SMALL_BODY_LIMIT
    if action in _SUBSCRIPTION_ACTIONS:
        return subscriptions.max_document_size(svc.settings)
    if action in _ADMIN_ACTIONS:
        return ADMIN_BODY_LIMIT
    if action in BODY_ACTIONS:
        return limits.max_queue_metadata
    raise ValueError(f"{action} takes no body")


def check_size(svc: Services, action: Action, size: int) -> None:
    """Refuse an oversize body with the action's own text (declared size, as Zaqar)."""
    if action is Action.MESSAGE_POST:
        return  # the queue's own limit applies; message_post checks it
    if action in _METADATA_ACTIONS:
        queues.check_metadata_size(svc, size, patch=action is Action.QUEUE_UPDATE)
        return
    limit = read_limit(svc, action)
    if size > limit:
        raise InvalidBody(f"Request body is too large. Max size: {limit}")


def decode(raw: bytes) -> Any:
    """None for an absent (zero-length) body, else the JSON document it holds."""
    return decode_json(raw) if raw else None


def document(svc: Services, action: Action, raw: bytes, size: int) -> Any:
    """``check_size`` then ``decode``: the body of any action but a message post."""
    check_size(svc, action, size)
    return decode(raw)
