"""Tidings: a multi-tenant messaging service speaking Zaqar's v2 API."""

__version__ = "0.1.0"
