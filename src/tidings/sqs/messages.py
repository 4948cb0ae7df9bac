"""SQS message operations over Tidings messages and claims (owned by helper H4; stubs until then)."""

from __future__ import annotations

from tidings.sqs.context import Params, Result, SqsCall
from tidings.sqs.errors import UnsupportedOperation


async def send_message(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def send_message_batch(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def receive_message(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def delete_message(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def delete_message_batch(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def change_message_visibility(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def change_message_visibility_batch(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")
