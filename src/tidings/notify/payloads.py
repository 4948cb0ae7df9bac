"""What a subscriber receives for each kind of delivery."""

from __future__ import annotations

import msgspec

from tidings.config import NotificationSettings
from tidings.model import Delivery, DeliveryKind
from tidings.ops.context import split_namespace

# Zaqar's placeholder in ``options.post_data``, quotes included.
POST_DATA_PLACEHOLDER = '"$zaqar_message$"'
DEFAULTS = NotificationSettings()


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


def webhook_body(delivery: Delivery, settings: NotificationSettings = DEFAULTS) -> bytes:
    """The POST body: the document, or ``options.post_data`` with it put in place.

    A template past the bounds (stored before they were lowered) raises ValueError
    rather than building a body of any size: at most ``max_post_data_placeholders``
    copies of the document in at most ``max_post_data_size`` bytes of template.
    """
    body = document(delivery)
    template = delivery.options.get("post_data")
    if not isinstance(template, str) or POST_DATA_PLACEHOLDER not in template:
        return body
    # Characters first: a huge template is refused before it is encoded.
    encoded = b"" if len(template) > settings.max_post_data_size else template.encode()
    if not encoded or len(encoded) > settings.max_post_data_size:
        raise ValueError(
            "options.post_data is larger than [notification] max_post_data_size "
            f"({settings.max_post_data_size} bytes)"
        )
    placeholder = POST_DATA_PLACEHOLDER.encode()
    if encoded.count(placeholder) > settings.max_post_data_placeholders:
        raise ValueError(
            f"options.post_data holds {POST_DATA_PLACEHOLDER} more than "
            f"{settings.max_post_data_placeholders} times "
            "([notification] max_post_data_placeholders)"
        )
    return encoded.replace(placeholder, body)
