"""The routes the HTTP app really serves, read from Falcon's router.

Tests that must cover every route (malformed bodies, tenant isolation) enumerate them
here, so that a route added to ``tidings.http.app`` is covered without editing them.
The app is built with admin mode and pooling on, so the pool and flavor routes are
among them (``POOLING_ROUTES``: servers without pooling answer them 404).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tidings.app import build_app
from tidings.config import DriverSettings, Settings

# Routes that exist only with admin mode and pooling (Zaqar's rule).
POOLING_ROUTES = ("/v2/pools", "/v2/flavors")


def pooling_route(template: str) -> bool:
    """Whether the route is one of the pool and flavor routes."""
    return any(template == p or template.startswith(p + "/") for p in POOLING_ROUTES)


def responders() -> list[tuple[str, str, Any]]:
    """(method, URI template, resource) of every responder in the app's router."""
    data_dir = Path(f"/tmp/tidings-router-{uuid.uuid4().hex}")
    settings = Settings(
        admin_mode=True,  # every route there is: admin mode and pooling (pools, flavors)
        pooling=True,
        drivers=DriverSettings(
            message_store=f"sqlite:///{data_dir / 'unused.db'}",
            management_store=f"sqlite:///{data_dir / 'unused-management.db'}",
        ),
    )
    app = build_app(settings)  # routes only: the store is never opened
    found = []
    nodes = list(app._router._roots)  # falcon's CompiledRouter
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        for method, responder in (node.method_map or {}).items():
            # Falcon fills unimplemented methods with its own 405 responders; ours are
            # bound methods of the resource.
            if getattr(responder, "__self__", None) is node.resource:
                found.append((method, node.uri_template, node.resource))
    return found
