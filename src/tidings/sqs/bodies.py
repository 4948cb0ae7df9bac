"""SQS message bodies over Tidings' JSON bodies: the stored envelope, SQS's checksums,
message attribute checks and receipt handles.

An SQS body is text. Sent without attributes it is stored as a JSON string; with
attributes (or system attributes) as ``{"_sqs": {"body": <text>, "attributes": {...},
"system": {...}}}``. Read back, a JSON string is its text, that envelope is unwrapped,
and any other JSON body (posted through Zaqar's API) is its compact JSON text.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import hashlib
import re
import struct
from collections.abc import Mapping
from typing import Any

import msgspec

from tidings import encryption
from tidings.ids import is_canonical
from tidings.sqs.errors import (
    InvalidMessageContents,
    InvalidParameterValue,
    MissingParameter,
    ReceiptHandleIsInvalid,
    shown,
)

ENVELOPE_KEY = "_sqs"
MAX_ATTRIBUTES = 10
MAX_NAME_LENGTH = 256
MAX_DATA_TYPE_LENGTH = 256
BASE_TYPES = ("String", "Number", "Binary")
SYSTEM_ATTRIBUTES = ("AWSTraceHeader",)
MAX_TRACE_HEADER = 1024

# The characters SQS accepts in bodies and string attribute values (XML 1.0's).
_INVALID_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
_RESERVED_PREFIXES = ("aws.", "amazon.")
# Number attributes: up to 38 significant digits, from -10^128 to 10^126 (SQS's range).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NUMBER_DIGITS = 38
_NUMBER_LOW = decimal.Decimal("-1e128")
_NUMBER_HIGH = decimal.Decimal("1e126")

Attributes = dict[str, dict[str, str]]
"""Message attributes as stored and answered: name -> {"DataType", "StringValue" |
"BinaryValue" (base64 text)}."""


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """A message as SQS reads it back."""

    text: str
    attributes: Attributes = msgspec.field(default_factory=dict)
    system: dict[str, str] = msgspec.field(default_factory=dict)


# Checksums ------------------------------------------------------------------------------


def md5_of_text(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def md5_of_attributes(attributes: Mapping[str, Mapping[str, str]]) -> str:
    """SQS's MD5OfMessageAttributes (also MD5OfMessageSystemAttributes): names sorted;
    each name, data type, a transport byte (1 text, 2 binary) and the value, every field
    but the byte preceded by its length (4 bytes, big-endian)."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        data_type = value["DataType"]
        digest.update(_length_prefixed(name.encode()))
        digest.update(_length_prefixed(data_type.encode()))
        if "BinaryValue" in value:
            digest.update(b"\x02")
            digest.update(_length_prefixed(base64.b64decode(value["BinaryValue"])))
        else:
            digest.update(b"\x01")
            digest.update(_length_prefixed(value["StringValue"].encode()))
    return digest.hexdigest()


# Checks ---------------------------------------------------------------------------------


def check_body(text: Any) -> str:
    """The message body: non-empty text of SQS's characters."""
    if text is None or text == "":
        raise MissingParameter("The request must contain the parameter MessageBody.")
    if not isinstance(text, str):
        raise InvalidParameterValue("Value for parameter MessageBody must be a string.")
    if _INVALID_CHARACTER.search(text):
        raise InvalidMessageContents(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | "
            "#x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
        )
    return text


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
        raise InvalidParameterValue(
            f"Message (user) attribute name '{shown(name)}' is invalid. Reason: names are 1 to "
            f"{MAX_NAME_LENGTH} characters of A-Z, a-z, 0-9, '_', '-' and '.'."
        )
    if name.lower().startswith(_RESERVED_PREFIXES):
        raise InvalidParameterValue(
            f"Message (user) attribute name '{name}' is invalid. Reason: names may not "
            "start with 'AWS.' or 'Amazon.'."
        )
    if ".." in name or name.startswith(".") or name.endswith("."):
        raise InvalidParameterValue(
            f"Message (user) attribute name '{name}' is invalid. Reason: names may not "
            "start or end with '.' nor hold '..'."
        )
    return name


def _check_data_type(name: str, data_type: Any) -> str:
    if data_type is None or data_type == "":
        raise InvalidParameterValue(
            f"The message attribute '{name}' must contain non-empty message attribute type."
        )
    if not isinstance(data_type, str) or len(data_type) > MAX_DATA_TYPE_LENGTH:
        raise InvalidParameterValue(
            f"The message attribute '{name}' has an invalid message attribute type."
        )
    base, dot, custom = data_type.partition(".")
    if base not in BASE_TYPES or (dot and not custom) or _INVALID_CHARACTER.search(custom):
        raise InvalidParameterValue(
            f"The type of message (user) attribute '{name}' is invalid. You must use only "
            "the following supported type prefixes: Binary, Number, String."
        )
    return data_type


def _check_number(name: str, text: str) -> None:
    try:
        if not _NUMBER.fullmatch(text):
            raise decimal.InvalidOperation
        number = decimal.Decimal(text)
        # Significant digits, exactly (normalize() would round to the context's 28).
        digits = "".join(map(str, number.as_tuple().digits)).strip("0")
        if len(digits) > _NUMBER_DIGITS or not _NUMBER_LOW <= number <= _NUMBER_HIGH:
            raise decimal.InvalidOperation
    except decimal.InvalidOperation:
        raise InvalidParameterValue(
            f"Can't cast the value of message (user) attribute '{name}' to a number."
        ) from None


def _check_value(name: str, data_type: str, value: Mapping[str, Any]) -> dict[str, str]:
    base = data_type.partition(".")[0]
    for unsupported in ("StringListValues", "BinaryListValues"):
        if value.get(unsupported):
            raise InvalidParameterValue(
                f"Message (user) attribute '{name}': {unsupported} is not supported."
            )
    string, binary = value.get("StringValue"), value.get("BinaryValue")
    if base == "Binary":
        if string is not None:
            raise InvalidParameterValue(
                f"Message (user) attribute '{name}' with type 'Binary' must use field 'Binary'."
            )
        if not isinstance(binary, str) or not binary:
            raise InvalidParameterValue(
                f"Message (user) attribute '{name}' must contain a non-empty value of "
                "type 'Binary'."
            )
        try:
            raw = base64.b64decode(binary, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameterValue(
                f"Message (user) attribute '{name}' has a BinaryValue that is not base64."
            ) from None
        if not raw:
            raise InvalidParameterValue(
                f"Message (user) attribute '{name}' must contain a non-empty value of "
                "type 'Binary'."
            )
        # Stored canonical, so its checksum and size do not depend on the spelling.
        return {"DataType": data_type, "BinaryValue": base64.b64encode(raw).decode()}
    if binary is not None:
        raise InvalidParameterValue(
            f"Message (user) attribute '{name}' with type '{base}' must use field 'String'."
        )
    if not isinstance(string, str) or not string:
        raise InvalidParameterValue(
            f"Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
        )
    if _INVALID_CHARACTER.search(string):
        raise InvalidParameterValue(
            f"Message (user) attribute '{name}' value contains invalid characters."
        )
    if base == "Number":
        _check_number(name, string)
    return {"DataType": data_type, "StringValue": string}


def check_attributes(raw: Any) -> Attributes:
    """MessageAttributes, checked and in the stored shape."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameterValue("Value for parameter MessageAttributes must be a map.")
    if len(raw) > MAX_ATTRIBUTES:
        raise InvalidParameterValue(
            f"Number of message attributes [{len(raw)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    checked: Attributes = {}
    for name, value in raw.items():
        _check_name(name)
        if not isinstance(value, dict):
            raise InvalidParameterValue(
                f"The message attribute '{name}' must be a map of DataType and a value."
            )
        data_type = _check_data_type(name, value.get("DataType"))
        checked[name] = _check_value(name, data_type, value)
    return checked


def check_system_attributes(raw: Any) -> dict[str, str]:
    """MessageSystemAttributes: SQS defines only AWSTraceHeader (a String)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameterValue("Value for parameter MessageSystemAttributes must be a map.")
    checked: dict[str, str] = {}
    for name, value in raw.items():
        if name not in SYSTEM_ATTRIBUTES:
            raise InvalidParameterValue(
                f"Message system attribute name '{shown(name)}' is invalid. Reason: the only "
                f"supported one is {SYSTEM_ATTRIBUTES[0]}."
            )
        if not isinstance(value, dict) or value.get("DataType") != "String":
            raise InvalidParameterValue(
                f"Message system attribute '{name}' must have the DataType String."
            )
        text = _check_value(name, "String", value)["StringValue"]
        if len(text) > MAX_TRACE_HEADER:
            # An X-Ray trace header is about 100 characters; nothing else counts it
            # against the message's size, so it gets a bound of its own.
            raise InvalidParameterValue(
                f"Message system attribute '{name}' is longer than {MAX_TRACE_HEADER} characters."
            )
        checked[name] = text
    return checked


def attributes_size(attributes: Attributes) -> int:
    """What attributes add to a message's size, as SQS counts: name, type and value."""
    size = 0
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        if "BinaryValue" in value:
            size += len(base64.b64decode(value["BinaryValue"]))
        else:
            size += len(value["StringValue"].encode())
    return size


# The stored body -----------------------------------------------------------------------


def stored_body(text: str, attributes: Attributes, system: dict[str, str]) -> bytes:
    """The JSON body Tidings stores for an SQS message."""
    if not attributes and not system and not text.startswith(encryption.PREFIX):
        return msgspec.json.encode(text)
    # Text that would read as an encrypted body goes in the envelope too.
    inner: dict[str, Any] = {"body": text}
    if attributes:
        inner["attributes"] = attributes
    if system:
        inner["system"] = system
    return msgspec.json.encode({ENVELOPE_KEY: inner})


def read_body(raw: bytes) -> Stored:
    """A stored body as SQS shows it (see the module's docstring)."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return Stored(text=raw.decode("utf-8", "replace"))
    if isinstance(value, str):
        return Stored(text=value)
    unwrapped = _unwrap(value)
    if unwrapped is not None:
        return unwrapped
    return Stored(text=msgspec.json.encode(value).decode())


def _unwrap(value: Any) -> Stored | None:
    if not (isinstance(value, dict) and len(value) == 1 and ENVELOPE_KEY in value):
        return None
    inner = value[ENVELOPE_KEY]
    if not isinstance(inner, dict) or not isinstance(inner.get("body"), str):
        return None
    if set(inner) - {"body", "attributes", "system"}:
        return None
    attributes = inner.get("attributes", {})
    system = inner.get("system", {})
    if not (_is_attributes(attributes) and _is_system(system)):
        return None
    return Stored(text=inner["body"], attributes=attributes, system=system)


def _is_attributes(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for attribute in value.values():
        if not isinstance(attribute, dict) or not isinstance(attribute.get("DataType"), str):
            return False
        keys = set(attribute) - {"DataType"}
        if keys == {"StringValue"}:
            if not isinstance(attribute["StringValue"], str):
                return False
        elif keys == {"BinaryValue"}:
            if not (
                isinstance(attribute["BinaryValue"], str) and is_base64(attribute["BinaryValue"])
            ):
                return False
        else:
            return False
    return True


def is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_system(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


# Receipt handles -------------------------------------------------------------------------

_HANDLE_VERSION = "1"


def receipt_handle(queue: str, message_id: str, claim_id: str) -> str:
    """An opaque handle naming the message and the claim (receive) that holds it."""
    text = f"{_HANDLE_VERSION}:{queue}:{message_id}:{claim_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_receipt_handle(handle: Any, queue: str) -> tuple[str, str]:
    """(message id, claim id) of a handle this queue gave out; ReceiptHandleIsInvalid
    for anything else."""
    if handle is None or handle == "":
        raise MissingParameter("The request must contain the parameter ReceiptHandle.")
    if not isinstance(handle, str):
        raise InvalidParameterValue("Value for parameter ReceiptHandle must be a string.")
    parts: list[str] = []
    if len(handle) <= 512 and handle.isascii():
        try:
            text = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4)).decode()
            parts = text.split(":")
        except (binascii.Error, ValueError):
            parts = []
    if (
        len(parts) != 4
        or parts[0] != _HANDLE_VERSION
        or parts[1] != queue
        or not is_canonical(parts[2])
        or not is_canonical(parts[3])
    ):
        raise ReceiptHandleIsInvalid(
            f'The input receipt handle "{shown(handle)}" is not a valid receipt handle.'
        )
    return parts[2], parts[3]
