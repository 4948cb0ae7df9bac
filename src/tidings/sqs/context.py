"""What every SQS operation receives: the services, the caller and where its URLs point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidings.ops.context import Caller, Services


@dataclass(frozen=True, slots=True)
class SqsCall:
    svc: Services
    caller: Caller
    # scheme://host[:port] that queue URLs start with (``[sqs] base_url`` or the request's).
    base_url: str
    # The queue URL the request was sent to (query protocol at a queue's path), if any:
    # operations that take a QueueUrl use it when the parameter is absent.
    path_queue_url: str | None = None


Params = dict[str, Any]
"""An operation's input in the JSON protocol's shape (the query protocol is converted)."""

Result = dict[str, Any]
"""An operation's output in the JSON protocol's shape (the query protocol renders it)."""
