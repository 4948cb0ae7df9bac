"""Clients from URIs, bounded calls, and the Lua scripts loaded by name."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from tidings.config import StorageSettings
from tidings.errors import StorageError
from tidings.storage.redis.keys import KeySpace

T = TypeVar("T")
Client = Redis | RedisCluster

DEFAULT_PREFIX = "tidings"
DEFAULT_PORT = 6379
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
COMMON_PRELUDE = "common"
QUEUE_PRELUDE = "queue_lib"
SOURCE_PRELUDE = "source_lib"
QUEUE_SCRIPTS = (
    "page", "get", "delete", "delete_many", "pop", "claim", "adopt",
    "claim_get", "renew", "release", "stats", "gc", "purge",
)  # fmt: skip
SOURCE_SCRIPTS = (
    "sub_create", "sub_page", "sub_update", "sub_confirm", "sub_delete", "sub_purge",
    "notify_enqueue", "notify_take", "notify_head", "notify_done", "notify_retry",
    "notify_fail", "source_gc",
)  # fmt: skip
# Scripts given a queue's keys followed by its source's (one slot).
QUEUE_SOURCE_SCRIPTS = ("post",)
CATALOG_SCRIPTS = ("catalog_create", "catalog_set", "catalog_delete", "catalog_page")
# The pooled-mode catalog (catalog.py): pools, and placements with their counters.
POOL_SCRIPTS = (
    "pool_put", "pool_get", "pool_page", "pool_delete", "pools_set_flavor",
    "placement_put", "placement_move", "placement_delete",
)  # fmt: skip
# The outbox's global index (two keys under one hash tag; see subscriptions.py).
OUTBOX_SCRIPTS = ("outbox_lower", "outbox_rescore")
# Index probes of the change feed (feed.py), given the keys they read.
FEED_SCRIPTS = ("next_ready",)
# A queue's metadata token alone (driver.py's metadata cache).
TOKEN_SCRIPTS = ("meta_token",)


def _lua(name: str) -> str:
    return (
        resources.files(__package__ or "tidings.storage.redis")
        .joinpath("lua", f"{name}.lua")
        .read_text(encoding="utf-8")
    )


def load_scripts() -> dict[str, str]:
    """Script texts by name; per-slot scripts get the shared preludes in front."""
    common, queue, source = _lua(COMMON_PRELUDE), _lua(QUEUE_PRELUDE), _lua(SOURCE_PRELUDE)
    scripts = {name: common + queue + _lua(name) for name in QUEUE_SCRIPTS}
    scripts.update({name: common + source + _lua(name) for name in SOURCE_SCRIPTS})
    scripts.update({name: common + queue + source + _lua(name) for name in QUEUE_SOURCE_SCRIPTS})
    standalone = CATALOG_SCRIPTS + POOL_SCRIPTS + OUTBOX_SCRIPTS + FEED_SCRIPTS + TOKEN_SCRIPTS
    scripts.update({name: _lua(name) for name in standalone})
    return scripts


SCRIPTS = load_scripts()


@dataclass(frozen=True, kw_only=True)
class Target:
    """What a store URI names: a client to build and the key prefix to use."""

    url: str
    prefix: str
    cluster: bool
    nodes: tuple[tuple[str, int], ...] = ()
    ssl: bool = False
    username: str | None = None
    password: str | None = None


def parse_uri(uri: str) -> Target:
    """``redis://host:port/db``, ``rediss://``, ``redis+cluster://h:p,h:p``; ``?prefix=``."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    if scheme in CLUSTER_SCHEMES:
        credentials, _, hosts = parts.netloc.rpartition("@")
        username, _, password = credentials.partition(":")
        return Target(
            url=uri,
            prefix=prefix,
            cluster=True,
            nodes=tuple(_host_port(h) for h in hosts.split(",") if h),
            ssl=CLUSTER_SCHEMES[scheme],
            username=unquote(username) or None,
            password=unquote(password) or None,
        )
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URI: {uri}")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    return Target(url=url, prefix=prefix, cluster=False)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = text, ""
    return host.strip("[]"), int(port) if port else DEFAULT_PORT


def make_client(target: Target, settings: StorageSettings) -> Client:
    """A client that connects lazily, so building it never fails on a Redis that is down."""
    timeout = settings.operation_timeout
    # A few quick retries ride over a restart; the outer deadline still bounds the call.
    retry = Retry(ExponentialBackoff(cap=timeout / 4, base=0.05), retries=2)
    if target.cluster:
        if not target.nodes:
            raise ValueError(f"the cluster URI names no node: {target.url}")
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=settings.pool_size,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            ssl=target.ssl,
            username=target.username,
            password=target.password,
            retry=retry,
        )
    # No socket timeout: Backend.call bounds every call with one deadline, and redis-py
    # drops a connection whose command was cancelled mid-way. A socket timeout would add
    # a timer per read and a task per write (wait_for) to every command. A plain pool, not
    # a blocking one: Backend.call already keeps at most pool_size calls in flight, so the
    # pool is never exhausted, and the blocking pool's condition and timer per checkout
    # cost ~15-25% of a post's CPU in process.
    pool = ConnectionPool.from_url(
        target.url,
        max_connections=settings.pool_size,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        retry=retry,
    )
    pool.connection_class = _HIREDIS_PACKED.get(pool.connection_class, pool.connection_class)
    return Redis.from_pool(pool)


class _HiredisPacking(AbstractConnection):
    """Commands packed by hiredis in C (same bytes as redis-py's Python packer).

    redis-py's asyncio connections pack every key and argument in Python; that cost
    ~8% of a post's CPU. Its synchronous client already packs with hiredis.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        # "SCRIPT LOAD": one word per argument, as redis-py sends it (commands are str).
        if isinstance(head, str) and " " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not take (memoryview...): redis-py's way
            return super().pack_command(*args)


class _HiredisConnection(_HiredisPacking, Connection):
    pass


class _HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


class _HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_HIREDIS_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _HiredisConnection,
    SSLConnection: _HiredisSSLConnection,
    UnixDomainSocketConnection: _HiredisUnixConnection,
}


class Backend:
    """A client, its scripts and key names; every call bounded and errors translated."""

    def __init__(self, client: Client, keys: KeySpace, settings: StorageSettings) -> None:
        self.client = client
        self.keys = keys
        self.timeout = settings.operation_timeout
        # Entries one script examines at most where it may pass over what it cannot use.
        self.scan_budget = settings.scan_budget
        # The cluster client fails (rather than waits) past max_connections per node, so
        # keep at most pool_size calls in flight ourselves.
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(text) for name, text in SCRIPTS.items()
        }

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call within the operation timeout, as a StorageError on failure."""
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                return await work()
        except TimeoutError as exc:
            raise StorageError(f"Redis did not answer within {self.timeout:g} s") from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StorageError(f"Redis failed: {exc}") from exc

    async def script(
        self, name: str, keys: Sequence[str] | Sequence[bytes], args: Sequence[Any]
    ) -> Any:
        """Run a Lua script by name (EVALSHA; reloaded by itself after a restart)."""
        script = self._scripts[name]
        return await self.call(lambda: self._evalsha(script, keys, args))

    async def _evalsha(
        self, script: AsyncScript, keys: Sequence[str] | Sequence[bytes], args: Sequence[Any]
    ) -> Any:
        # What AsyncScript.__call__ does, without copying keys and arguments twice first.
        client = self.client
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted (or another server answers): load it again
            script.sha = await client.script_load(script.script)
            return await client.evalsha(script.sha, len(keys), *keys, *args)
