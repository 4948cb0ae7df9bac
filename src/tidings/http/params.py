"""Query-string and body helpers with Zaqar's parameter error texts."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from tidings.errors import InvalidBody, InvalidParameter
from tidings.ops.validation import decode_json

TRUE_VALUES = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_VALUES = frozenset({"false", "f", "no", "n", "0", "off"})


def int_param(req: falcon.asgi.Request, name: str) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter.integer(name) from None


def bool_param(req: falcon.asgi.Request, name: str) -> bool:
    raw = req.get_param(name)
    if raw is None:
        return False
    lowered = raw.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    raise InvalidParameter.boolean(name)


def list_param(req: falcon.asgi.Request, name: str) -> list[str] | None:
    """Comma-separated and/or repeated (``?ids=a,b&ids=c``); None when absent or blank."""
    raw = req.get_param_as_list(name)
    if raw is None:
        return None
    items = [item.strip() for value in raw for item in value.split(",") if item.strip()]
    return items or None


async def read_body(req: falcon.asgi.Request, limit: int) -> tuple[bytes, int]:
    """The body and its size, reading at most ``limit + 1`` bytes of it.

    The size is the Content-Length when given (Zaqar compares that against limits),
    else what was read; either way an oversize body is never held in memory whole.
    """
    declared = req.content_length
    if declared is not None and declared > limit:
        return b"", declared
    chunks: list[bytes] = []
    received = 0
    async for chunk in req.stream:
        chunks.append(chunk)
        received += len(chunk)
        if received > limit:
            break
    if declared is not None and received < declared:
        # The client went away or was timed out mid-body: never act on part of a request.
        raise InvalidBody(f"The request body ended after {received} of {declared} bytes.")
    return b"".join(chunks), declared if declared is not None else received


def optional_document(raw: bytes) -> Any:
    """A JSON body that may be absent: None when empty, else the decoded document."""
    return decode_json(raw) if raw.strip() else None


async def read_document(req: falcon.asgi.Request, limit: int) -> Any:
    """A small optional JSON body (claims, purge); oversize bodies are refused."""
    raw, size = await read_body(req, limit)
    if size > limit:
        raise InvalidBody(f"Request body is too large. Max size: {limit}")
    return optional_document(raw)
