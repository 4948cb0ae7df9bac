"""The ``tidings`` command: serve, migrate the store's schema, create API tokens,
load-test a server (``bench``), and report the version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import secrets
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

from tidings import __version__, bench
from tidings.config import CONFIG_FILE_ENV, ConfigError, Settings, load_settings
from tidings.errors import StorageError
from tidings.storage import (
    POSTGRES_SCHEMES,
    REDIS_SCHEMES,
    UnsupportedStoreURI,
    create_storage,
    storage_for_uri,
)


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
    token = commands.add_parser("token", help="manage static API tokens (auth_strategy tokens)")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser(
        "create",
        help="print a new token (or, with --aws, an access key pair) once and append it to "
        "the tokens file",
    )
    create.add_argument(
        "--aws",
        action="store_true",
        help="an AWS access key pair for the SQS API (the secret is stored: SigV4 needs it)",
    )
    create.add_argument("--project", required=True, help="the project the token acts in")
    create.add_argument("--user", help="the user id policy sees (default: none)")
    create.add_argument(
        "--roles", default="member", help="comma-separated roles (default: member)"
    )
    create.add_argument(
        "--expires-in",
        type=float,
        metavar="SECONDS",
        help="the token stops working this many seconds from now (default: never)",
    )
    create.add_argument("--tokens-file", help="default: [auth] tokens_file of the configuration")
    create.add_argument("--config", help="TOML configuration file")
    policy = commands.add_parser("policy", help="show the authorization policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    policy_commands.add_parser("defaults", help="print the default rules as a policy file (YAML)")
    bench.add_parser(commands)
    return parser


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tidings.http.server_protocol import GuardedHttpToolsProtocol, raise_descriptor_limit

    if args.config:
        # Worker processes read their settings from the environment too.
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(args.config)
    # Not the app: with several workers this process only supervises them (each worker
    # imports the app).
    from tidings.admission.auth.factory import check_auth_settings
    from tidings.admission.auth.noauth import warn_if_exposed
    from tidings.admission.policy import enforcer as policy_enforcer
    from tidings.observe.logs import STARTUP_LOGGER, redact
    from tidings.observe.logs import configure as configure_logging
    from tidings.uvicorn_options import ssl_options, uvicorn_ws_options

    try:
        settings = load_settings()
        create_storage(settings)  # fail fast on a bad store URI
        if settings.pooling:  # and on a bad management store URI
            storage_for_uri(settings.drivers.management_uri(), settings.storage)
        check_auth_settings(settings)  # and on an unusable auth strategy
        policy_enforcer(settings.oslo_policy.policy_file)  # and on a bad policy file
        _check_tls(settings)  # and on a certificate that cannot be loaded
    except (ConfigError, UnsupportedStoreURI, ValueError) as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    server = settings.server
    configure_logging(server.log_level, server.log_format)
    warn_if_exposed(settings, args.host or server.host)
    workers = args.workers or server.workers
    if workers < 1:
        print("tidings: --workers must be at least 1", file=sys.stderr)
        return 2
    if settings.websocket.port and settings.websocket.port == (
        args.port if args.port is not None else server.port
    ):
        print("tidings: [websocket] port must differ from the HTTP port", file=sys.stderr)
        return 2
    metrics_port = settings.metrics.port if settings.metrics.enabled else None
    if metrics_port is not None and metrics_port in (
        args.port if args.port is not None else server.port,
        settings.websocket.port,
    ):
        print("tidings: [metrics] port must differ from the HTTP and WebSocket ports",
              file=sys.stderr)  # fmt: skip
        return 2
    if settings.metrics.enabled:
        try:
            _share_metrics_directory()
        except OSError as exc:
            print(f"tidings: cannot prepare the metrics directory: {exc}", file=sys.stderr)
            return 2
    # Workers read settings from the environment; they must know where they listen so
    # that no subscriber can point back at this server (notify/destinations.py).
    os.environ["TIDINGS_SERVER__HOST"] = args.host or server.host
    os.environ["TIDINGS_SERVER__PORT"] = str(args.port if args.port is not None else server.port)
    raise_descriptor_limit(server.max_connections)
    scheme = "https" if server.ssl_certfile else "http"
    ws_port = settings.websocket.port
    # A log line (JSON with log_format = "json"), shown at every log level.
    logging.getLogger(STARTUP_LOGGER).info(
        f"tidings {__version__}: serving on {scheme}://{args.host or server.host}:"
        f"{args.port if args.port is not None else server.port} "
        + (f"(WebSocket also on port {ws_port}) " if ws_port else "")
        + (
            f"pooled, with the catalog in {redact(settings.drivers.management_uri())}"
            if settings.pooling
            else f"with {redact(settings.drivers.message_store)}"
        )
        + f" ({workers} worker(s))",
    )
    uvicorn.run(
        "tidings.app:create_app",
        factory=True,
        host=args.host or server.host,
        port=args.port if args.port is not None else server.port,
        workers=workers,
        timeout_worker_healthcheck=server.worker_healthcheck_timeout,
        loop="uvloop",
        # httptools with the [server] connection limits (sizes, timeouts, caps).
        http=GuardedHttpToolsProtocol.factory(server),
        log_level=server.log_level,
        # Logging is configure_logging's, in every process (uvicorn's own format would
        # break JSON logs).
        log_config=None,
        access_log=False,
        server_header=False,
        # Nothing reads the client's address or scheme: no X-Forwarded-* rewriting
        # wrapped around every request.
        proxy_headers=False,
        lifespan="on",
        **uvicorn_ws_options(settings),
        **ssl_options(settings),
    )
    return 0


def _share_metrics_directory() -> None:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` (inherited by the workers) at a fresh private
    directory, removed at exit, unless the operator named one: every worker writes its
    metrics there and a scrape adds them up (``tidings.observe.metrics``).

    prometheus_client chooses between per-process and shared values when it is first
    imported, so this runs before anything in this process imports it.
    """
    import atexit
    import shutil
    import tempfile

    from tidings.observe.metrics import DIRECTORY_PREFIX, MULTIPROC_ENV

    assert "prometheus_client" not in sys.modules, "imported before its directory was set"
    named = os.environ.get(MULTIPROC_ENV)
    if named:
        if not os.path.isdir(named):
            raise OSError(f"{MULTIPROC_ENV}={named} is not a directory")
        return  # the operator's: kept, and emptied between runs by them
    _remove_orphaned_metrics_directories()
    # Named after this process: one killed before its exit hook ran is found above later.
    directory = tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-")  # mode 0700
    os.environ[MULTIPROC_ENV] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _remove_orphaned_metrics_directories() -> None:
    """Remove the metrics directories of this user's ``tidings serve`` processes that are
    gone (killed: no exit hook ran)."""
    import shutil
    import tempfile

    from tidings.observe.metrics import DIRECTORY_PREFIX

    root = tempfile.gettempdir()
    for name in os.listdir(root):
        pid = name.removeprefix(DIRECTORY_PREFIX).partition("-")[0]
        if not name.startswith(DIRECTORY_PREFIX) or not pid.isdigit():
            continue
        path = os.path.join(root, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive (another user's, or permission denied), or gone already
            continue


def _check_tls(settings: Settings) -> None:
    """Load ``[server] ssl_certfile`` / ``ssl_keyfile`` once, to fail before serving."""
    import ssl

    server = settings.server
    if not server.ssl_certfile:
        return
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server.ssl_certfile, server.ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load [server] ssl_certfile / ssl_keyfile: {exc}") from exc


async def _upgrade(settings: Settings, uri: str) -> int | None:
    """Migrate the store at ``uri``; None when the backend keeps no schema."""
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
    storage_for_uri(uri, settings.storage)  # raises UnsupportedStoreURI with the accepted forms
    return None


def db_upgrade(args: argparse.Namespace) -> int:
    """Migrate the message store, and in pooled mode the management store too (the
    pools are migrated when they are opened, or by ``db upgrade`` with their URI as
    message store)."""
    try:
        settings = load_settings(args.config)
        stores = [("", settings.drivers.message_store)]
        if settings.pooling:
            stores.append(("management ", settings.drivers.management_uri()))
        results = []
        for role, uri in stores:
            scheme = uri.partition("://")[0].lower()
            results.append((role, scheme, asyncio.run(_upgrade(settings, uri))))
    except (ConfigError, UnsupportedStoreURI, ValueError) as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"tidings: migration failed: {exc}", file=sys.stderr)
        return 1
    for role, scheme, version in results:
        if version is None:
            print(f"tidings: the {role}{scheme} store keeps no schema; nothing to migrate")
        else:
            print(f"tidings: {role}{scheme} schema at version {version}")
    return 0


def token_create(args: argparse.Namespace) -> int:
    """Print a new token once and append only its hash; with ``--aws``, print a new
    access key pair once and append it, secret included (``admission/auth/tokens.py``)."""
    import msgspec

    from tidings.admission.auth.tokens import (
        AccessKeyRecord,
        TokenRecord,
        record_line,
        token_hash,
    )

    try:
        path = args.tokens_file or load_settings(args.config).auth.tokens_file
    except ConfigError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    if not path:
        print(
            "tidings: no tokens file: pass --tokens-file or set [auth] tokens_file",
            file=sys.stderr,
        )
        return 2
    now = datetime.now(UTC)
    fields: dict[str, object]
    if args.aws:
        # 20 characters as AWS's (80 random bits: an id, not a secret), and a 40-character
        # secret of 240 random bits.
        access_key = "TDK" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))
        fields = {"access_key": access_key, "secret_key": secrets.token_urlsafe(30)}
    else:
        token = secrets.token_urlsafe(32)
        fields = {"sha256": token_hash(token)}
    fields |= {
        "project": args.project,
        "user": args.user,
        "roles": [r.strip().lower() for r in args.roles.split(",") if r.strip()],
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if args.expires_in is not None:
        if not 0 < args.expires_in < 1e9:
            print("tidings: --expires-in must be a positive number of seconds", file=sys.stderr)
            return 2
        # Whole seconds, rounded up: the token lives at least as long as asked.
        ends = math.ceil(now.timestamp() + args.expires_in)
        fields["expires"] = datetime.fromtimestamp(ends, UTC)
    record: TokenRecord | AccessKeyRecord
    try:
        if args.aws:
            record = msgspec.convert(fields, AccessKeyRecord)
        else:
            record = msgspec.convert(fields, TokenRecord)
    except msgspec.ValidationError as exc:
        print(f"tidings: cannot create the token: {exc}", file=sys.stderr)
        return 2
    try:
        loose = _append_line(Path(path), record_line(record))
    except OSError as exc:
        print(f"tidings: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    if loose:
        print(f"tidings: warning: {path} is readable or writable by others; chmod 600 it",
              file=sys.stderr)
    if isinstance(record, AccessKeyRecord):
        # The shape of ~/.aws/credentials (under a [profile] line) and of aws configure.
        print(f"aws_access_key_id = {record.access_key}")
        print(f"aws_secret_access_key = {record.secret_key}")
        print(
            f"tidings: access key {record.access_key} for project {record.project!r} added "
            f"to {path}; the secret is shown only this once (the file keeps it: SigV4 needs "
            "it, so keep the file private)",
            file=sys.stderr,
        )
        return 0
    print(token)
    print(
        f"tidings: token for project {record.project!r} added to {path}; "
        "it is shown only this once",
        file=sys.stderr,
    )
    return 0


# Access key ids: upper-case letters and digits, as AWS's.
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _append_line(path: Path, line: bytes) -> bool:
    """Append ``line`` in one write (O_APPEND: concurrent appends never interleave),
    creating the file with mode 0600; whether the file is open to others."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_size and not _ends_with_newline(path):
            line = b"\n" + line  # a hand-edited last line must not swallow ours
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    return bool(info.st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "db":
        return db_upgrade(args)
    if args.command == "token":
        return token_create(args)
    if args.command == "bench":
        return bench.main(args)
    if args.command == "policy":
        from tidings.admission.policy import defaults_yaml

        print(defaults_yaml(), end="")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
