"""The service user's way to Keystone, shared by a process's two keystone strategies
(tokens on the HTTP API, EC2 credentials on the SQS face): one keystoneauth1 session
logged in as ``[keystone_authtoken]``'s user, Keystone's identity endpoint found through
its catalog, and a small pool of threads for keystoneauth1's blocking calls, each bounded
by ``[storage] operation_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from keystoneauth1 import adapter, session
from keystoneauth1.identity import generic

from tidings.config import ConfigError, Settings
from tidings.errors import ServiceUnavailable

T = TypeVar("T")

REQUIRED = ("auth_url", "username", "password", "project_name")
# Keystone calls in flight at once; more wait for a thread (within the same timeout), so
# a hung Keystone holds a few threads, not one per request.
CALL_THREADS = 8


class KeystoneService:
    def __init__(self, settings: Settings) -> None:
        conf = settings.keystone_authtoken
        missing = [name for name in REQUIRED if not getattr(conf, name)]
        if missing or conf.auth_url is None:
            raise ConfigError(
                'auth_strategy = "keystone" needs keystone_authtoken.'
                + ", keystone_authtoken.".join(missing)
            )
        # The generic plugin takes auth_url with or without /v3; the domains make it v3.
        auth = generic.Password(
            auth_url=conf.auth_url,
            username=conf.username,
            password=conf.password,
            project_name=conf.project_name,
            user_domain_name=conf.user_domain_name,
            project_domain_name=conf.project_domain_name,
        )
        self.timeout = settings.storage.operation_timeout
        # The session's own timeout bounds each HTTP call a thread makes (connect and
        # read); call() bounds the whole of it with an asyncio timeout around the thread.
        self._session = session.Session(auth=auth, timeout=self.timeout, user_agent="tidings")
        # Keystone's identity endpoint from the catalog, as keystonemiddleware finds it.
        self.identity = adapter.Adapter(
            self._session,
            service_type="identity",
            interface=["internal", "public"],
            region_name=conf.region_name,
            version="3.0",
        )
        self._executor = ThreadPoolExecutor(
            max_workers=CALL_THREADS, thread_name_prefix="tidings-keystone"
        )

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on a Keystone thread; a 503 past the operation timeout."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(self._executor, function, *args)
        except TimeoutError:
            raise ServiceUnavailable(
                f"The identity service did not answer within {self.timeout:g}s."
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._session.session.close()
