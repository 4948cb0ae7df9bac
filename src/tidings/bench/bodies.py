"""Message bodies that look like real events, built once per request loop.

A post's body is a template split where the send time goes: each request joins the
pieces with ``repr(time.time())`` (one allocation), so consumers can measure how long a
message waited between its post and its claim.
"""

from __future__ import annotations

import json
import random
import uuid

SENT_MARK = "\x00SENT\x00"
_WORDS = (
    "order", "invoice", "shipment", "account", "payment", "refund", "stock", "customer",
    "region", "priority", "status", "pending", "confirmed", "delivered", "warehouse",
    "carrier", "total", "currency", "discount", "address", "note", "label", "retry",
)
_EVENTS = ("order.created", "order.paid", "shipment.sent", "invoice.issued", "stock.low")


def _message(rng: random.Random, size: int, ttl: int) -> str:
    """One message's JSON, about ``size`` bytes, with SENT_MARK where the time goes."""
    body: dict[str, object] = {
        "event": rng.choice(_EVENTS),
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "sent": SENT_MARK,
        "source": f"bench-{rng.randrange(1000):03d}",
        "attributes": {
            "region": rng.choice(("eu-west", "us-east", "ap-south")),
            "priority": rng.randrange(1, 6),
            "amount": round(rng.uniform(1, 5000), 2),
            "items": [rng.randrange(10_000) for _ in range(3)],
        },
        "note": "",
    }
    # The mark's JSON (18 characters) is about as long as the send time's repr.
    base = len(json.dumps({"ttl": ttl, "body": body}, separators=(",", ":")))
    words: list[str] = []
    length = 0
    while base + length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    body["note"] = " ".join(words)[: max(0, size - base)]
    return json.dumps({"ttl": ttl, "body": body}, separators=(",", ":"))


def post_pieces(seed: int, size: int, batch: int, ttl: int) -> list[bytes]:
    """A post body of ``batch`` messages, split at each send-time slot."""
    rng = random.Random(seed)
    messages = ",".join(_message(rng, size, ttl) for _ in range(batch))
    document = '{"messages":[' + messages + "]}"
    return [part.encode() for part in document.split(json.dumps(SENT_MARK))]


def render(pieces: list[bytes], sent: float) -> bytes:
    return repr(sent).encode().join(pieces)
