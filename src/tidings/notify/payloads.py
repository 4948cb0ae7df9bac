"""What a subscriber receives for each kind of delivery."""

from __future__ import annotations

import msgspec

from tidings.model import Delivery, DeliveryKind
from tidings.ops.context import split_namespace

# Zaqar's placeholder in ``options.post_data``, quotes included.
POST_DATA_PLACEHOLDER = '"$zaqar_message$"'


def notification(delivery: Delivery) -> bytes:
    """Zaqar's notification document, plus the message's id and href.

    The message as submitted (ttl, body, delay when the queue delays) with
    ``Message_Type`` and the source's name.
    """
    _, collection = split_namespace(delivery.project)
    document: dict[str, object] = {"ttl": delivery.ttl, "body": msgspec.Raw(delivery.payload)}
    if delivery.delay:
        document["delay"] = delivery.delay
    document["Message_Type"] = "Notification"
    document["queue_name" if collection == "queues" else "topic_name"] = delivery.source
    document["message_id"] = delivery.message_id
    document["href"] = f"/v2/{collection}/{delivery.source}/messages/{delivery.message_id}"
    return msgspec.json.encode(document)


def document(delivery: Delivery) -> bytes:
    """The JSON document this delivery carries."""
    if delivery.kind is DeliveryKind.NOTIFICATION:
        return notification(delivery)
    return delivery.payload  # confirmations are built whole when they are owed


def webhook_body(delivery: Delivery) -> bytes:
    """The POST body: the document, or ``options.post_data`` with it put in place."""
    body = document(delivery)
    template = delivery.options.get("post_data")
    if isinstance(template, str) and POST_DATA_PLACEHOLDER in template:
        return template.replace(POST_DATA_PLACEHOLDER, body.decode()).encode()
    return body
