"""Reading an operation's parameters: types and ranges, answered with SQS's error codes.

Parameters come in the JSON protocol's shape; the query protocol's strings are converted
to the model's types before (``protocol.py``), so a number here is an ``int`` already.
"""

from __future__ import annotations

from typing import Any

from tidings.sqs.context import Params
from tidings.sqs.errors import InvalidParameterValue, MissingParameter


def required_str(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise MissingParameter(f"The request must contain the parameter {name}.")
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Value for parameter {name} must be a string.")
    return value


def optional_str(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidParameterValue(f"Value for parameter {name} must be a string.")
    return value


def optional_int(params: Params, name: str, low: int, high: int) -> int | None:
    """An integer in [low, high], or None when absent."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterValue(
            f"Value {value!r} for parameter {name} is invalid. Reason: must be an integer."
        )
    if not low <= value <= high:
        raise InvalidParameterValue(
            f"Value {value} for parameter {name} is invalid. Reason: Must be between "
            f"{low} and {high}, if provided."
        )
    return value


def required_int(params: Params, name: str, low: int, high: int) -> int:
    value = optional_int(params, name, low, high)
    if value is None:
        raise MissingParameter(f"The request must contain the parameter {name}.")
    return value


def optional_list(params: Params, name: str) -> list[Any]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameterValue(f"Value for parameter {name} must be a list.")
    return value


def optional_map(params: Params, name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"Value for parameter {name} must be a map.")
    return value
