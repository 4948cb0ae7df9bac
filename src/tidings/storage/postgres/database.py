"""Connections to PostgreSQL: a lazy pool, bounded calls, StorageError, schema migrations.

Nothing here knows about queues or messages: the stores in ``driver`` hand in a
coroutine function that receives a connection, and get its result or an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from tidings.config import StorageSettings
from tidings.errors import StorageError
from tidings.storage.sql import load_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = Sequence[Any]

MIGRATIONS = load_migrations("tidings.storage.postgres.migrations", ".")
SCHEMES = ("postgresql://", "postgres://")
DEFAULT_SCHEMA = "public"
VERSION_TABLE = "tidings_schema_version"

# Everything that means "the server or the path to it failed", as opposed to a
# domain outcome raised by our own code inside a transaction.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
# A call cancelled mid-query leaves its connection as unusable as a failed one.
ABANDONED: tuple[type[BaseException], ...] = (*BACKEND_ERRORS, asyncio.CancelledError)
UNREACHABLE: tuple[type[BaseException], ...] = (*BACKEND_ERRORS, StorageError)


class Transaction(Protocol):
    async def start(self) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class Connection(Protocol):
    """The part of ``asyncpg.Connection`` the driver uses."""

    async def execute(self, query: str, *args: Any) -> str: ...
    async def fetch(self, query: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> Transaction: ...
    def terminate(self) -> None: ...


Work = Callable[[Connection], Awaitable[T]]


@dataclass(frozen=True)
class Target:
    """Where the data lives: a DSN for asyncpg and the schema holding the tables."""

    dsn: str
    schema: str


def parse_uri(uri: str) -> Target:
    """Split ``postgresql://user@host:port/db?schema=NAME`` into DSN and schema."""
    if not uri.startswith(SCHEMES):
        raise ValueError(f"not a PostgreSQL URI: {uri}")
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if not schema:
        raise ValueError("the schema parameter of the PostgreSQL URI is empty")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return Target(dsn=urlunsplit(parts._replace(query=rest)), schema=schema)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lock_key(schema: str) -> int:
    # One advisory lock per schema: nodes migrating the same schema take turns,
    # other schemas (other deployments, parallel tests) are not held up.
    digest = hashlib.blake2b(f"tidings-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "PostgreSQL did not answer in time"
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"PostgreSQL schema is not set up ({exc}); run `tidings db upgrade`"
    return f"PostgreSQL failed: {type(exc).__name__}: {exc}"


async def migrate(connection: Connection, schema: str) -> int:
    """Apply pending migrations under an advisory lock; returns the version reached."""
    async with _transaction(connection):
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        exists = await connection.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
        if not exists:
            await connection.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        # The connection's search_path may have been resolved before the schema existed.
        await connection.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(
            await connection.fetchval(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")
        )
        for version, script in MIGRATIONS:
            if version > current:
                await connection.execute(script)
                await connection.execute(
                    f"INSERT INTO {VERSION_TABLE} (version) VALUES ($1)", version
                )
                current = version
    if current > MIGRATIONS[-1][0]:
        log.warning("schema %s is at version %d, newer than this build knows", schema, current)
    return current


class _transaction:
    """``async with`` over a plain transaction of a ``Connection``."""

    def __init__(self, connection: Connection) -> None:
        self._tx = connection.transaction()

    async def __aenter__(self) -> None:
        await self._tx.start()

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            await self._tx.commit()
        else:
            await self._tx.rollback()


@dataclass(frozen=True)
class Mode:
    """How a call runs: in a read-write transaction, a read-only snapshot, or neither."""

    transaction: bool
    isolation: str | None = None
    readonly: bool = False


WRITE = Mode(transaction=True)
SNAPSHOT = Mode(transaction=True, isolation="repeatable_read", readonly=True)
SINGLE = Mode(transaction=False)


class Database:
    """A connection pool created without connecting; every call bounded in time."""

    def __init__(self, target: Target, settings: StorageSettings) -> None:
        self.target = target
        self._timeout = settings.operation_timeout
        self._pool_size = settings.pool_size
        self._migrate_on_start = settings.migrate_on_start
        # Rows one statement examines at most where it may pass over rows it cannot use.
        self.scan_budget = settings.scan_budget
        self._pool: Any = None
        self._migrated = False
        self._migration: asyncio.Task[int] | None = None

    def _server_settings(self) -> dict[str, str]:
        bound_ms = str(int(self._timeout * 1000))
        return {
            "search_path": quote_ident(self.target.schema),
            "application_name": "tidings",
            # The server gives up too, so a timed-out call leaves no work or locks behind.
            "statement_timeout": bound_ms,
            "idle_in_transaction_session_timeout": str(int(self._timeout * 4000)),
            # Compiling plans costs more than these short queries ever run.
            "jit": "off",
            # The best plan depends on the values (above all on "now"): a generic plan
            # for "claim_expires <= $3" may walk a whole queue. Planning is cheap.
            "plan_cache_mode": "force_custom_plan",
        }

    async def open(self) -> None:
        """Create the pool and migrate; when PostgreSQL is down, only warn."""
        if self._pool is None:
            # min_size=0: no connection is made here, so a down server cannot stop
            # start-up; connections are made (and remade) on demand.
            self._pool = await asyncpg.create_pool(
                self.target.dsn,
                min_size=0,
                max_size=self._pool_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
                max_inactive_connection_lifetime=60.0,
                server_settings=self._server_settings(),
                reset=_keep_session,
            )
        if self._migrate_on_start:
            try:
                await asyncio.wait_for(self._ensure_schema(), self._timeout)
            except (StorageError, TimeoutError) as exc:
                log.warning(
                    "PostgreSQL schema %s not migrated yet (%s); will retry on first use",
                    self.target.schema,
                    exc,
                )

    async def close(self) -> None:
        if self._migration is not None and not self._migration.done():
            self._migration.cancel()
            await asyncio.wait([self._migration], timeout=self._timeout)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self._timeout)
        except BACKEND_ERRORS:
            pool.terminate()

    async def upgrade(self) -> int:
        """Apply pending migrations now, waiting as long as they take."""
        try:
            connection = await self._connect_for_migration()
            try:
                version = await migrate(connection, self.target.schema)
            finally:
                await connection.close(timeout=self._timeout)
        except BACKEND_ERRORS as exc:
            raise StorageError(describe(exc)) from exc
        self._migrated = True
        return version

    @property
    def timeout(self) -> float:
        """The bound on every call (``operation_timeout``)."""
        return self._timeout

    async def connect(self, application_name: str, *, durable_commits: bool = True) -> Any:
        """A connection of its own, outside the pool (the change feed's listener, its
        signal sender); raises what asyncpg raises. ``durable_commits=False`` is for a
        connection that writes nothing but notifications (see signals.py): its commits
        do not wait for the disk."""
        settings = self._server_settings()
        settings["application_name"] = application_name
        if not durable_commits:
            settings["synchronous_commit"] = "off"
        return await asyncpg.connect(
            self.target.dsn, timeout=self._timeout, server_settings=settings
        )

    async def _connect_for_migration(self) -> Any:
        # A connection of its own, without statement_timeout: building indexes on a
        # large table may rightly take longer than any API call may.
        settings = self._server_settings()
        del settings["statement_timeout"], settings["idle_in_transaction_session_timeout"]
        return await asyncpg.connect(
            self.target.dsn, timeout=self._timeout, server_settings=settings
        )

    async def _ensure_schema(self) -> None:
        if self._migrated or not self._migrate_on_start:
            return
        if self._migration is None or self._migration.done():
            if self._migration is not None and not self._migration.cancelled():
                self._migration.exception()  # seen: the attempt failed, start another
            self._migration = asyncio.get_running_loop().create_task(self.upgrade())
        task = self._migration
        try:
            # Shielded: a caller's timeout must not abort a migration half-way, which
            # would make every later attempt start over.
            await asyncio.shield(task)
        except BACKEND_ERRORS as exc:
            raise StorageError(describe(exc)) from exc

    async def run(self, work: Work[T], mode: Mode) -> T:
        """Run ``work`` on a pooled connection within ``operation_timeout``."""
        if self._pool is None:
            raise StorageError("PostgreSQL storage is not open; call open() first")
        try:
            async with asyncio.timeout(self._timeout):
                await self._ensure_schema()
                async with self._pool.acquire(timeout=self._timeout) as connection:
                    return await _guarded(connection, work, mode)
        except BACKEND_ERRORS as exc:
            raise StorageError(describe(exc)) from exc

    async def ping(self) -> bool:
        """True when a connection answers ``SELECT 1`` in time."""

        async def probe(connection: Connection) -> bool:
            return bool(await connection.fetchval("SELECT 1") == 1)

        if self._pool is None:
            return False
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.acquire(timeout=self._timeout) as connection:
                    return await _guarded(connection, probe, SINGLE)
        except UNREACHABLE:
            return False


async def _keep_session(_connection: Any) -> None:
    """What a connection's release does beyond asyncpg's own clean-up (which rolls back
    a transaction left open): nothing. Its default sends every released connection
    ``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL`` and an advisory unlock, a round trip
    after each call, but no call leaves anything for them to undo: settings are the
    connection's own (``server_settings``), nobody listens on pooled connections (the
    feed has its own), no cursor outlives its transaction, advisory locks are all
    transaction-level."""


async def _guarded(connection: Connection, work: Work[T], mode: Mode) -> T:
    """Run ``work``; a backend failure or cancellation discards the connection."""
    tx = (
        connection.transaction(isolation=mode.isolation, readonly=mode.readonly)
        if mode.transaction
        else None
    )
    try:
        if tx is not None:
            await tx.start()
        result = await work(connection)
        if tx is not None:
            await tx.commit()
        return result
    except ABANDONED:
        # The connection may be mid-protocol or its server gone: never reuse it, and
        # do not wait for a rollback the server does on its own when we hang up.
        connection.terminate()
        raise
    except BaseException:
        # A domain outcome (or a failed ``prepare``): undo what the work wrote.
        if tx is not None:
            await _rollback(connection, tx)
        raise


async def _rollback(connection: Connection, tx: Transaction) -> None:
    try:
        await tx.rollback()
    except BaseException:
        connection.terminate()
        raise
