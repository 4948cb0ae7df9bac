"""SQS queue operations over Tidings queues (owned by helper H3; stubs until then)."""

from __future__ import annotations

from tidings.sqs.context import Params, Result, SqsCall
from tidings.sqs.errors import UnsupportedOperation


async def create_queue(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def get_queue_url(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def list_queues(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def delete_queue(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def get_queue_attributes(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def set_queue_attributes(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def purge_queue(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def tag_queue(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def untag_queue(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def list_queue_tags(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")


async def list_dead_letter_source_queues(call: SqsCall, params: Params) -> Result:
    raise UnsupportedOperation("not yet")
