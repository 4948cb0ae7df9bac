"""Queue URLs (``<base>/<project>/<queue>``) and ARNs (``arn:aws:sqs:<region>:<project>:<queue>``).

A URL or ARN naming another project resolves to nothing: the caller gets
``QueueDoesNotExist``, exactly as for a queue that is not there, so a probe learns nothing.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from tidings.ops.validation import QUEUE_NAME
from tidings.sqs.context import Params, SqsCall
from tidings.sqs.errors import InvalidParameterValue, MissingParameter, QueueDoesNotExist, shown


def queue_url(call: SqsCall, queue: str) -> str:
    return f"{call.base_url}/{quote(call.caller.project, safe='')}/{queue}"


def queue_arn(call: SqsCall, queue: str) -> str:
    return f"arn:aws:sqs:{call.svc.settings.sqs.region}:{call.caller.project}:{queue}"


def queue_from_url(call: SqsCall, url: str) -> str:
    """The caller's queue a QueueUrl names (its host is not checked: SDKs rewrite it)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1/p/q"
        parts = None
    if parts is None or (not parts.path and not parts.netloc):
        raise InvalidParameterValue(f"Value {shown(url)} for parameter QueueUrl is invalid.")
    segments = parts.path.strip("/").split("/")
    if len(segments) != 2:
        raise InvalidParameterValue(
            f"Value {shown(url)} for parameter QueueUrl is invalid. Reason: a queue URL is "
            "<endpoint>/<project>/<queue>."
        )
    project, name = unquote(segments[0]), unquote(segments[1])
    if project != call.caller.project or not QUEUE_NAME.fullmatch(name):
        raise QueueDoesNotExist()
    return name


def queue_from_params(call: SqsCall, params: Params) -> str:
    """The queue of an operation that takes ``QueueUrl`` (or was sent to a queue's URL)."""
    url = params.get("QueueUrl")
    if url is None:
        url = call.path_queue_url
    if url is None:
        raise MissingParameter("The request must contain the parameter QueueUrl.")
    if not isinstance(url, str):
        raise InvalidParameterValue("Value for parameter QueueUrl must be a string.")
    return queue_from_url(call, url)


def queue_from_arn(call: SqsCall, arn: str) -> str:
    """The caller's queue an ARN names (InvalidParameterValue when it names none of them)."""
    # arn:aws:sqs:<region>:<project>:<queue>; a project id may itself hold ":".
    prefix, _, name = arn.rpartition(":")
    parts = prefix.split(":", 4)
    if (
        len(parts) != 5
        or parts[:3] != ["arn", "aws", "sqs"]
        or parts[4] != call.caller.project
        or not QUEUE_NAME.fullmatch(name)
    ):
        raise InvalidParameterValue(
            f"Value {shown(arn)} for parameter deadLetterTargetArn is invalid."
        )
    return name
