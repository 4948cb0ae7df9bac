"""SQS's errors: each carries the code SDKs match, its HTTP status and whose fault it is.

``code`` is what the query protocol's ``<Code>`` and the JSON protocol's
``x-amzn-query-error`` header carry (botocore maps it to its modelled exceptions, e.g.
``QueueDoesNotExist`` for ``AWS.SimpleQueueService.NonExistentQueue``); ``shape`` is the
JSON protocol's ``__type`` suffix (``com.amazonaws.sqs#<shape>``).
"""

from __future__ import annotations


def shown(value: object) -> str:
    """A client's value in an error message: at most 128 characters, printable (a huge
    or binary value is not echoed back whole)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 128:
        text = text[:128] + "..."
    return text if text.isprintable() else repr(text)


class SqsError(Exception):
    code: str = "InternalError"
    shape: str = ""  # empty: same as code
    status: int = 500
    sender: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def type_name(self) -> str:
        return self.shape or self.code


class _SenderError(SqsError):
    status = 400
    sender = True


class InvalidParameterValue(_SenderError):
    code = "InvalidParameterValue"


class MissingParameter(_SenderError):
    code = "MissingParameter"


class InvalidAction(_SenderError):
    code = "InvalidAction"


class UnsupportedOperation(_SenderError):
    code = "AWS.SimpleQueueService.UnsupportedOperation"
    shape = "UnsupportedOperation"


class MalformedQueryString(_SenderError):
    code = "MalformedQueryString"


class InvalidQueryParameter(_SenderError):
    code = "InvalidQueryParameter"


class SerializationError(_SenderError):
    """A JSON-protocol body that is not a JSON object of the operation's input."""

    code = "SerializationException"


class QueueDoesNotExist(_SenderError):
    code = "AWS.SimpleQueueService.NonExistentQueue"
    shape = "QueueDoesNotExist"

    def __init__(self, message: str = "The specified queue does not exist.") -> None:
        super().__init__(message)


class QueueNameExists(_SenderError):
    code = "QueueAlreadyExists"
    shape = "QueueNameExists"


class QueueDeletedRecently(_SenderError):
    code = "AWS.SimpleQueueService.QueueDeletedRecently"
    shape = "QueueDeletedRecently"


class InvalidAttributeName(_SenderError):
    code = "InvalidAttributeName"


class InvalidAttributeValue(_SenderError):
    code = "InvalidAttributeValue"


class InvalidMessageContents(_SenderError):
    code = "InvalidMessageContents"


class ReceiptHandleIsInvalid(_SenderError):
    code = "ReceiptHandleIsInvalid"


class InvalidIdFormat(_SenderError):
    code = "InvalidIdFormat"


class MessageNotInflight(_SenderError):
    code = "AWS.SimpleQueueService.MessageNotInflight"
    shape = "MessageNotInflight"


class EmptyBatchRequest(_SenderError):
    code = "AWS.SimpleQueueService.EmptyBatchRequest"
    shape = "EmptyBatchRequest"


class TooManyEntriesInBatchRequest(_SenderError):
    code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    shape = "TooManyEntriesInBatchRequest"


class BatchEntryIdsNotDistinct(_SenderError):
    code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    shape = "BatchEntryIdsNotDistinct"


class InvalidBatchEntryId(_SenderError):
    code = "AWS.SimpleQueueService.InvalidBatchEntryId"
    shape = "InvalidBatchEntryId"


class BatchRequestTooLong(_SenderError):
    code = "AWS.SimpleQueueService.BatchRequestTooLong"
    shape = "BatchRequestTooLong"


class OverLimit(_SenderError):
    code = "OverLimit"
    status = 403


class PurgeQueueInProgress(_SenderError):
    code = "AWS.SimpleQueueService.PurgeQueueInProgress"
    shape = "PurgeQueueInProgress"
    status = 403


# Identity ----------------------------------------------------------------------------


class MissingAuthenticationToken(_SenderError):
    code = "MissingAuthenticationToken"
    status = 403

    def __init__(self, message: str = "Request is missing Authentication Token") -> None:
        super().__init__(message)


class IncompleteSignature(_SenderError):
    code = "IncompleteSignature"


class InvalidClientTokenId(_SenderError):
    code = "InvalidClientTokenId"
    status = 403

    def __init__(
        self, message: str = "The security token included in the request is invalid."
    ) -> None:
        super().__init__(message)


class SignatureDoesNotMatch(_SenderError):
    code = "SignatureDoesNotMatch"
    status = 403

    def __init__(
        self,
        message: str = (
            "The request signature we calculated does not match the signature you "
            "provided. Check your AWS Secret Access Key and signing method."
        ),
    ) -> None:
        super().__init__(message)


class RequestExpired(_SenderError):
    code = "RequestExpired"
    status = 403


class AccessDenied(_SenderError):
    code = "AccessDenied"
    status = 403

    def __init__(self, message: str = "Access to the resource is denied.") -> None:
        super().__init__(message)


# Service side --------------------------------------------------------------------------


class RequestThrottled(SqsError):
    code = "RequestThrottled"
    status = 400
    sender = True


class ServiceUnavailable(SqsError):
    code = "ServiceUnavailable"
    status = 503


class InternalError(SqsError):
    code = "InternalError"
    status = 500


class MissingAction(_SenderError):
    """A query-protocol request without ``Action`` (added by H1, the transport)."""

    code = "MissingAction"
