"""Every SQS operation Tidings answers, by name: its handler and the policy action that
guards it (so ``policy.yaml`` rules apply to SQS callers exactly as to Zaqar's).

This table is the SQS face's router: the protocol layer dispatches through it and the
tests that must cover every operation enumerate it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tidings.admission.actions import Action
from tidings.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TidingsError,
    Unauthorized,
)
from tidings.sqs import errors, messages, queues
from tidings.sqs.context import Params, Result, SqsCall

Handler = Callable[[SqsCall, Params], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class Operation:
    handler: Handler
    action: Action


OPERATIONS: dict[str, Operation] = {
    "CreateQueue": Operation(queues.create_queue, Action.QUEUE_CREATE),
    "GetQueueUrl": Operation(queues.get_queue_url, Action.QUEUE_GET),
    "ListQueues": Operation(queues.list_queues, Action.QUEUE_LIST),
    "DeleteQueue": Operation(queues.delete_queue, Action.QUEUE_DELETE),
    "GetQueueAttributes": Operation(queues.get_queue_attributes, Action.QUEUE_GET),
    "SetQueueAttributes": Operation(queues.set_queue_attributes, Action.QUEUE_UPDATE),
    "PurgeQueue": Operation(queues.purge_queue, Action.QUEUE_PURGE),
    "TagQueue": Operation(queues.tag_queue, Action.QUEUE_UPDATE),
    "UntagQueue": Operation(queues.untag_queue, Action.QUEUE_UPDATE),
    "ListQueueTags": Operation(queues.list_queue_tags, Action.QUEUE_GET),
    "ListDeadLetterSourceQueues": Operation(
        queues.list_dead_letter_source_queues, Action.QUEUE_LIST
    ),
    "SendMessage": Operation(messages.send_message, Action.MESSAGE_POST),
    "SendMessageBatch": Operation(messages.send_message_batch, Action.MESSAGE_POST),
    "ReceiveMessage": Operation(messages.receive_message, Action.CLAIM_CREATE),
    "DeleteMessage": Operation(messages.delete_message, Action.MESSAGE_DELETE),
    "DeleteMessageBatch": Operation(messages.delete_message_batch, Action.MESSAGE_DELETE),
    "ChangeMessageVisibility": Operation(messages.change_message_visibility, Action.CLAIM_UPDATE),
    "ChangeMessageVisibilityBatch": Operation(
        messages.change_message_visibility_batch, Action.CLAIM_UPDATE
    ),
}

# In SQS's API but not (yet) in Tidings': answered UnsupportedOperation, not InvalidAction.
NOT_SUPPORTED = frozenset(
    {
        "AddPermission",
        "RemovePermission",
        "StartMessageMoveTask",
        "CancelMessageMoveTask",
        "ListMessageMoveTasks",
    }
)


def lookup(name: str) -> Operation:
    operation = OPERATIONS.get(name)
    if operation is not None:
        return operation
    if name in NOT_SUPPORTED:
        raise errors.UnsupportedOperation(f"Tidings does not support {name} yet.")
    raise errors.InvalidAction(f"The action {errors.shown(name)} is not valid for this endpoint.")


async def run(call: SqsCall, operation: Operation, params: Params) -> Result:
    """The operation's result; a Tidings error becomes the SQS error that says the same."""
    try:
        return await operation.handler(call, params)
    except TidingsError as exc:
        raise as_sqs_error(exc) from exc


def as_sqs_error(exc: TidingsError) -> errors.SqsError:
    text = exc.description or exc.title
    if isinstance(exc, ServiceUnavailable):
        return errors.ServiceUnavailable(text)
    if isinstance(exc, NotFound):
        return errors.QueueDoesNotExist()
    if isinstance(exc, Unauthorized):
        return errors.InvalidClientTokenId(text)
    if isinstance(exc, Forbidden):
        return errors.AccessDenied()
    if isinstance(exc, (BadRequest, Conflict)) or 400 <= exc.status < 500:
        return errors.InvalidParameterValue(text)
    return errors.InternalError("The request could not be completed.")
