"""The ``tidings`` command: serve, migrate the store's schema, and report the version."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tidings import __version__
from tidings.config import CONFIG_FILE_ENV, ConfigError, Settings, load_settings
from tidings.errors import StorageError
from tidings.storage import POSTGRES_SCHEMES, REDIS_SCHEMES, UnsupportedStoreURI, create_storage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tidings {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8888)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port")
    serve.add_argument("--config", help="TOML configuration file")
    db = commands.add_parser("db", help="manage the message store's schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply pending schema migrations")
    upgrade.add_argument("--config", help="TOML configuration file")
    return parser


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tidings.http.server_protocol import GuardedHttpToolsProtocol, raise_descriptor_limit

    if args.config:
        # Worker processes read their settings from the environment too.
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(args.config)
    try:
        settings = load_settings()
        create_storage(settings)  # fail fast on a bad store URI
    except (ConfigError, UnsupportedStoreURI, ValueError) as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    server = settings.server
    workers = args.workers or server.workers
    if workers < 1:
        print("tidings: --workers must be at least 1", file=sys.stderr)
        return 2
    # Workers read settings from the environment; they must know where they listen so
    # that no subscriber can point back at this server (notify/destinations.py).
    os.environ["TIDINGS_SERVER__HOST"] = args.host or server.host
    os.environ["TIDINGS_SERVER__PORT"] = str(args.port if args.port is not None else server.port)
    raise_descriptor_limit(server.max_connections)
    print(
        f"tidings {__version__}: serving on http://{args.host or server.host}:"
        f"{args.port if args.port is not None else server.port} "
        f"with {settings.drivers.message_store} ({workers} worker(s))",
        file=sys.stderr,
    )
    uvicorn.run(
        "tidings.app:create_app",
        factory=True,
        host=args.host or server.host,
        port=args.port if args.port is not None else server.port,
        workers=workers,
        loop="uvloop",
        # httptools with the [server] connection limits (sizes, timeouts, caps).
        http=GuardedHttpToolsProtocol.factory(server),
        log_level=server.log_level,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    return 0


async def _upgrade(settings: Settings) -> int | None:
    """Migrate the configured store; None when the backend keeps no schema."""
    uri = settings.drivers.message_store
    scheme = uri.partition("://")[0].lower()
    if scheme in POSTGRES_SCHEMES:
        from tidings.storage.postgres.driver import PostgresStorage

        return await PostgresStorage.from_uri(uri, settings.storage).upgrade()
    if scheme == "sqlite":
        from tidings.storage.sqlite.driver import MIGRATIONS, SQLiteStorage

        store = SQLiteStorage.from_uri(uri, settings.storage)
        await store.open()  # opening applies any pending migration
        await store.close()
        return MIGRATIONS[-1][0]
    if scheme in REDIS_SCHEMES:
        return None
    create_storage(settings)  # raises UnsupportedStoreURI with the accepted forms
    return None


def db_upgrade(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        scheme = settings.drivers.message_store.partition("://")[0].lower()
        version = asyncio.run(_upgrade(settings))
    except (ConfigError, UnsupportedStoreURI, ValueError) as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"tidings: migration failed: {exc}", file=sys.stderr)
        return 1
    if version is None:
        print(f"tidings: the {scheme} store keeps no schema; nothing to migrate")
    else:
        print(f"tidings: {scheme} schema at version {version}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "db":
        return db_upgrade(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
