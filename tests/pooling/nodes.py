"""The settings of a pooled Tidings node in the pooling tests."""

from __future__ import annotations


def node_env(management: str, **extra: str) -> dict[str, str]:
    """A pooled node over the ``management`` store; ``extra`` settings on top."""
    return {
        "TIDINGS_POOLING": "true",
        "TIDINGS_ADMIN_MODE": "true",
        "TIDINGS_DRIVERS__MANAGEMENT_STORE": management,
        # Pools and flavors made on one node take part in placement soon on the others.
        "TIDINGS_POOLING_CATALOG__CACHE_TTL": "0.5",
        "TIDINGS_STORAGE__OPERATION_TIMEOUT": "2",
        # Webhooks to the test's own listener on the loopback interface.
        "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
        **extra,
    }
