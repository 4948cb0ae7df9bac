"""Request parameters as typed values, with Zaqar's parameter error texts.

A value is a string (or a list of them, for a repeated query parameter) from text
transports, or already a JSON value (int, bool, list) from JSON ones; both decode alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from tidings.errors import InvalidParameter

Params = Mapping[str, object]

TRUE_VALUES = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_VALUES = frozenset({"false", "f", "no", "n", "0", "off"})
# Ids that are not UUIDs simply match nothing, so these are not checked for NUL.
ID_PARAMETERS = frozenset({"ids", "claim_id", "claim_ids"})


def check_parameters(params: Params) -> None:
    """No parameter value may hold NUL: no store keeps it, and it never means anything."""
    for name, value in params.items():
        if name in ID_PARAMETERS:
            continue
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and "\x00" in v for v in values):
            raise InvalidParameter(f'The "{name}" parameter is invalid.')


def _last(value: object) -> object:
    # A repeated parameter counts once: its last value.
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def text(params: Params, name: str) -> str | None:
    value = _last(params.get(name))
    if value is None or isinstance(value, str):
        return value
    raise InvalidParameter(f'The "{name}" parameter is invalid.')


def integer(params: Params, name: str) -> int | None:
    value = _last(params.get(name))
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise InvalidParameter.integer(name)


# A plain decimal number of seconds: no sign, exponent, underscores or spaces.
DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def seconds(params: Params, name: str) -> float | None:
    """A number of seconds, decimals allowed (``2``, ``0.5``); its range is the caller's."""
    value = _last(params.get(name))
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # An integer too large for a float (10**400) is as invalid as inf or NaN.
        number = float(value) if isinstance(value, float) or abs(value) < 2**53 else math.inf
        if math.isfinite(number):
            return number
    elif isinstance(value, str) and DECIMAL.fullmatch(value):
        return float(value)
    raise InvalidParameter(
        f'The "{name}" parameter is invalid. The value must be a number of seconds.'
    )


def boolean(params: Params, name: str) -> bool:
    """False when absent; Zaqar's spellings of true and false otherwise."""
    value = _last(params.get(name))
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_VALUES:
            return True
        if lowered in FALSE_VALUES:
            return False
    raise InvalidParameter.boolean(name)


def id_list(params: Params, name: str) -> list[str] | None:
    """Comma-separated and/or repeated (``?ids=a,b&ids=c``); None when absent or blank."""
    value = params.get(name)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise InvalidParameter(f'The "{name}" parameter is invalid.')
    items = [item.strip() for v in values for item in str(v).split(",") if item.strip()]
    return items or None
