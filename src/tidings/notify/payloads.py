"""What a subscriber receives for each kind of delivery."""

from __future__ import annotations

import msgspec

from tidings import encryption
from tidings.config import NotificationSettings
from tidings.model import Delivery, DeliveryKind
from tidings.namespace import split_namespace

# Zaqar's placeholder in ``options.post_data``, quotes included.
POST_DATA_PLACEHOLDER = '"$zaqar_message$"'


def notification(delivery: Delivery) -> bytes:
    """Zaqar's notification document, plus the message's id and href.

    The message as submitted (ttl, body, delay when the queue delays) with
    ``Message_Type`` and the source's name.
    """
    if encryption.is_sealed(delivery.payload):
        # The dispatcher opens bodies before sending (Keyring.open_delivery); a sealed
        # one here is a bug, and ciphertext is never sent.
        raise ValueError("the message body is still encrypted; it is not sent that way")
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


def post_data_problem(template: str, settings: NotificationSettings) -> str | None:
    """Why ``options.post_data`` may not serve as a template, or None when it may."""
    # Characters first: a huge template is refused before it is encoded.
    limit = settings.max_post_data_size
    if len(template) > limit or len(template.encode()) > limit:
        return (
            f"Options post_data may not exceed {limit} bytes "
            "([notification] max_post_data_size)."
        )
    if template.count(POST_DATA_PLACEHOLDER) > settings.max_post_data_placeholders:
        return (
            f"Options post_data may hold {POST_DATA_PLACEHOLDER} at most "
            f"{settings.max_post_data_placeholders} times "
            "([notification] max_post_data_placeholders)."
        )
    return None


def webhook_body(delivery: Delivery, settings: NotificationSettings) -> bytes:
    """The POST body: the document, or ``options.post_data`` with it put in place.

    A template past the bounds (stored before they were lowered) raises ValueError
    rather than building a body of any size: at most ``max_post_data_placeholders``
    copies of the document in at most ``max_post_data_size`` bytes of template.
    """
    body = document(delivery)
    template = delivery.options.get("post_data")
    if not isinstance(template, str) or POST_DATA_PLACEHOLDER not in template:
        return body
    problem = post_data_problem(template, settings)
    if problem is not None:
        raise ValueError(problem)
    return template.encode().replace(POST_DATA_PLACEHOLDER.encode(), body)
