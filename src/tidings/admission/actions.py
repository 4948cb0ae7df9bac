"""Every API action by name: what policy, body limits and transports refer to."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """An API action; the values are Zaqar's WebSocket action names where it has one."""

    VERSIONS = "get_versions"
    HOME = "get_home_doc"
    PING = "ping_node"
    HEALTH = "check_node_health"
    # GET /metrics (HTTP only; Zaqar has no such action).
    METRICS = "get_metrics"

    QUEUE_LIST = "queue_list"
    QUEUE_CREATE = "queue_create"
    QUEUE_GET = "queue_get"
    QUEUE_EXISTS = "queue_exists"
    QUEUE_UPDATE = "queue_update"
    QUEUE_DELETE = "queue_delete"
    QUEUE_STATS = "queue_get_stats"
    QUEUE_PURGE = "queue_purge"
    QUEUE_SHARE = "queue_share"

    MESSAGE_LIST = "message_list"
    MESSAGE_GET_MANY = "message_get_many"
    MESSAGE_POST = "message_post"
    MESSAGE_GET = "message_get"
    MESSAGE_DELETE = "message_delete"
    # Deletes by ids, or pops (``pop``), as Zaqar's message_delete_many does.
    MESSAGE_DELETE_MANY = "message_delete_many"

    CLAIM_CREATE = "claim_create"
    CLAIM_GET = "claim_get"
    CLAIM_UPDATE = "claim_update"
    CLAIM_DELETE = "claim_delete"

    SUBSCRIPTION_LIST = "subscription_list"
    SUBSCRIPTION_CREATE = "subscription_create"
    SUBSCRIPTION_GET = "subscription_get"
    SUBSCRIPTION_UPDATE = "subscription_update"
    SUBSCRIPTION_DELETE = "subscription_delete"
    SUBSCRIPTION_CONFIRM = "subscription_confirm"
    SUBSCRIPTION_FAILURES = "subscription_failures"

    # Pools and flavors (WebSocket names; the store behind them comes with pooling).
    POOL_LIST = "pool_list"
    POOL_CREATE = "pool_create"
    POOL_GET = "pool_get"
    POOL_UPDATE = "pool_update"
    POOL_DELETE = "pool_delete"
    FLAVOR_LIST = "flavor_list"
    FLAVOR_CREATE = "flavor_create"
    FLAVOR_GET = "flavor_get"
    FLAVOR_UPDATE = "flavor_update"
    FLAVOR_DELETE = "flavor_delete"
