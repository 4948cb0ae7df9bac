"""Typed settings, validated at start-up, read from TOML and ``TIDINGS_*`` variables.

Option names and defaults follow Zaqar's where the concept is the same, so an operator
can carry a Zaqar configuration over. ``TIDINGS_<SECTION>__<OPTION>`` sets a sectioned
option, ``TIDINGS_<OPTION>`` a top-level one.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import platformdirs

ENV_PREFIX = "TIDINGS_"
CONFIG_FILE_ENV = "TIDINGS_CONFIG"

Seconds = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class ConfigError(Exception):
    """The configuration is invalid; the message says which option and why."""


# Key ids are written into every encrypted body; these characters need no escaping there.
ENCRYPTION_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ENCRYPTION_KEY_BYTES = 32


class EncryptionKey(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One AES-256-GCM key: an id stored with each body it seals, and 32 bytes in base64."""

    id: str
    key: str

    def __post_init__(self) -> None:
        if not ENCRYPTION_KEY_ID.fullmatch(self.id):
            raise ValueError(
                f"message_encryption_keys: key id {self.id!r} must be 1 to 64 letters, "
                "digits, '.', '_' or '-'"
            )
        # The key itself never appears in an error: configuration errors get logged.
        if len(decode_key(self.key) or b"") != ENCRYPTION_KEY_BYTES:
            raise ValueError(
                f"message_encryption_keys: key {self.id!r} must be {ENCRYPTION_KEY_BYTES} "
                "random bytes in base64 (e.g. from `openssl rand -base64 32`)"
            )

    def __repr__(self) -> str:
        return f"EncryptionKey(id={self.id!r}, key=<hidden>)"


def decode_key(text: str) -> bytes | None:
    """The bytes of a base64 key (standard or URL-safe alphabet), None when malformed."""
    text = text.strip()
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


class TransportSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Request limits and defaults (Zaqar's ``[transport]`` group)."""

    max_queues_per_page: Positive = 20
    max_pools_per_page: Positive = 20
    max_flavors_per_page: Positive = 20
    max_messages_per_page: Positive = 20
    max_messages_per_claim_or_pop: Positive = 20
    # Ours (Zaqar bounds a post only by bytes): each message of a post costs a row and a
    # notification per subscription, so the count is bounded too.
    max_messages_per_post: Positive = 100
    # Ours: nesting depth of queue metadata values (deeper documents break JSON patching).
    max_metadata_depth: Positive = 32
    max_queue_metadata: Positive = 65536
    max_messages_post_size: Positive = 262144
    max_message_ttl: Annotated[int, msgspec.Meta(ge=60)] = 1209600
    max_message_delay: Seconds = 900
    max_claim_ttl: Annotated[int, msgspec.Meta(ge=60)] = 43200
    max_claim_grace: Annotated[int, msgspec.Meta(ge=60)] = 43200
    default_message_ttl: Annotated[int, msgspec.Meta(ge=60)] = 3600
    default_message_delay: Seconds = 0
    default_claim_ttl: Annotated[int, msgspec.Meta(ge=60)] = 300
    default_claim_grace: Annotated[int, msgspec.Meta(ge=60)] = 60
    client_id_uuid_safe: Literal["strict", "off"] = "strict"
    min_length_client_id: Positive = 10
    max_length_client_id: Positive = 36
    message_delete_with_claim_id: bool = False
    default_subscription_ttl: Annotated[int, msgspec.Meta(ge=60)] = 3600
    max_subscriptions_per_page: Positive = 20
    # Ours: live subscriptions per queue or topic (each message fans out to every one).
    max_subscriptions_per_queue: Positive = 50
    # Ours: characters in a subscriber URI.
    max_subscriber_length: Positive = 2048
    # trust+http(s) needs Keystone trusts, which this build does not do.
    subscriber_types: list[Literal["http", "https", "mailto"]] = msgspec.field(
        default_factory=lambda: ["http", "https", "mailto"]
    )
    # Keys for queues with ``_enable_encrypt_messages`` (AES-256-GCM). No default: without
    # one, such queues are refused. New bodies are sealed with the first; every body
    # records its key's id, so keep a retired key listed while its messages may live
    # (max_message_ttl) or they can no longer be read.
    message_encryption_keys: list[EncryptionKey] = msgspec.field(default_factory=list)
    # Ours, long polling (``?wait=N`` on claims and listings): requests waiting at once
    # per worker process (also at most half of [server] max_concurrent_requests, so they
    # never hold every request slot), and for one project; past either, a request with
    # ``wait`` is answered at once, as without it. 0 turns waiting off.
    max_waiting_requests: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 200
    max_waiting_requests_per_project: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 50

    def __post_init__(self) -> None:
        ids = [k.id for k in self.message_encryption_keys]
        if len(ids) != len(set(ids)):
            raise ValueError("message_encryption_keys: key ids must be unique")


def default_message_store() -> str:
    data_dir = Path(platformdirs.user_data_dir("tidings"))
    return f"sqlite:///{data_dir / 'tidings.db'}"


class DriverSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Which backend stores messages, as a URI (``sqlite:///path``, ``redis://``...)."""

    message_store: str = msgspec.field(default_factory=default_message_store)
    # Pooled mode: where pools, flavors, the queue catalog and queue metadata live
    # (SQLite, PostgreSQL or Redis). None: ``management.db`` beside the embedded store.
    management_store: str | None = None

    def management_uri(self) -> str:
        """``management_store``, or by default a SQLite file beside the embedded store."""
        if self.management_store:
            return self.management_store
        scheme, _, rest = self.message_store.partition("://")
        if scheme.lower() == "sqlite" and rest.startswith("/") and "?" not in rest:
            return f"sqlite://{Path(rest).with_name('management.db')}"
        data_dir = Path(platformdirs.user_data_dir("tidings"))
        return f"sqlite:///{data_dir / 'management.db'}"


class PoolingCatalogSettings(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    """Pooled mode's catalog ([pooling_catalog])."""

    # A queue on no pool uses [drivers] message_store as a nameless pool.
    enable_virtual_pool: bool = False
    # How long a node may route by a cached placement or pool list before reading the
    # catalog again (placements never change under a queue that holds data).
    cache_ttl: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    # Placements one node caches at most (least recently used ones are dropped).
    cache_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000


class StorageSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Connections to the store and its housekeeping."""

    gc_interval: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # SQLite: how long to wait for the write lock before failing with a 503.
    busy_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # Redis and PostgreSQL: bound on one backend call (connect included); past it the
    # request fails with a 503 instead of hanging.
    operation_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # Redis and PostgreSQL: connections per worker process. (SQLite has one writer and
    # a fixed pair of reader threads per process; this does not apply to it.)
    pool_size: Positive = 10
    # PostgreSQL: apply pending schema migrations when the server starts.
    migrate_on_start: bool = True
    # Rows (queues, messages) one request or one housekeeping step examines at most; a
    # filtered queue listing that runs out returns what it found and a marker to go on.
    scan_budget: Annotated[int, msgspec.Meta(ge=100, le=100_000)] = 1000


class ServerSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8888
    workers: Positive = 1
    # With several workers, one that does not answer the supervisor's health ping for
    # this long is killed and replaced, with every connection it holds (uvicorn's own
    # default of 5 s kills workers that a loaded machine merely left unscheduled).
    worker_healthcheck_timeout: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "json": every log line a JSON object, plus one line per request (tidings.observe.logs).
    log_format: Literal["text", "json"] = "text"
    # Connection limits, per worker process (see http/server_protocol.py).
    max_header_size: Annotated[int, msgspec.Meta(ge=1024)] = 65536  # request line + headers
    max_url_length: Annotated[int, msgspec.Meta(ge=256)] = 8192
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # whole head, from connect
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # whole body, from its head
    keepalive_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0  # idle between requests
    max_connections: Positive = 1000
    max_concurrent_requests: Positive = 500
    # TLS (added with the WebSocket API, issue 10): with a certificate (PEM; the key in
    # it or in ssl_keyfile) the server speaks https and wss, on the separate WebSocket
    # port too.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("server.ssl_keyfile needs server.ssl_certfile")


class EmailTemplate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A confirmation email: ``body`` gets {0} the queue, {1} the project, {2} the link."""

    topic: str
    body: str
    sender: str


class NotificationSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Subscriptions' delivery (Zaqar's ``[notification]`` group, plus bounds of our own)."""

    require_confirmation: bool = False
    # Deliveries in flight per worker process; past it, deliveries wait in the outbox.
    max_notifier_workers: Positive = 10
    # Every outbound call is bounded: seconds for a webhook POST or an SMTP exchange.
    delivery_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # How often each worker looks for deliveries owed by other nodes (its own posts wake it).
    poll_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    # A delivery taken by a worker that dies is taken again after this many seconds.
    lease: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    # Ours: the shortest wait before any retry, so "retries_with_no_delay" cannot spin.
    min_retry_delay: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 1.0
    # Ours: tries of one delivery at most, whatever its retry policy says; a delivery
    # whose worker keeps crashing counts each lease that ran out as a try.
    max_delivery_attempts: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 50
    # Ours: deliveries in flight per worker for one project, and for one subscriber
    # host:port, so that no tenant (or slow host) holds the slots others need.
    max_deliveries_per_project: Positive = 4
    max_deliveries_per_host: Positive = 4
    # Ours: seconds a delivery failure is kept (SQL stores; at most 1000 per subscription).
    failure_retention: Annotated[float, msgspec.Meta(gt=0)] = 604800.0
    # Webhooks may not reach these networks (CIDRs; [] allows all); the server's own
    # listen addresses are refused whatever the list says.
    subscriber_deny_networks: list[str] = msgspec.field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10"]
    )
    # options.post_data: bytes of the template, and how many "$zaqar_message$" it may hold.
    max_post_data_size: Positive = 65536
    max_post_data_placeholders: Annotated[int, msgspec.Meta(ge=0)] = 4
    smtp_mode: Literal["third_part", "self_local"] = "third_part"
    smtp_command: str = "/usr/sbin/sendmail -t -oi"
    smtp_host: str = "localhost"
    smtp_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 465
    smtp_user_name: str | None = None
    smtp_user_password: str | None = None
    # self_local: "ssl" (implicit TLS, as Zaqar), "starttls", or "none" (plain, local relays).
    smtp_security: Literal["ssl", "starttls", "none"] = "ssl"
    external_confirmation_url: str | None = None
    # From: of notification emails whose subscription sets no options.from.
    email_sender: str = "Tidings Notifications <no-reply@localhost>"
    subscription_confirmation_email_template: EmailTemplate = msgspec.field(
        default_factory=lambda: EmailTemplate(
            topic="Confirm your subscription",
            body=(
                "You subscribed to the queue {0} of project {1}. To confirm the "
                "subscription, open this link: {2}"
            ),
            sender="Tidings Notifications <no-reply@localhost>",
        )
    )
    unsubscribe_confirmation_email_template: EmailTemplate = msgspec.field(
        default_factory=lambda: EmailTemplate(
            topic="You have unsubscribed",
            body=(
                "You unsubscribed from the queue {0} of project {1}. To subscribe "
                "again, open this link: {2}"
            ),
            sender="Tidings Notifications <no-reply@localhost>",
        )
    )

    def __post_init__(self) -> None:
        for cidr in self.subscriber_deny_networks:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"subscriber_deny_networks: {cidr!r} is not a network in CIDR form"
                ) from None


class SignedUrlSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Pre-signed URLs (Zaqar's ``[signed_url]`` group)."""

    # No default: without a key, POST .../share answers 400 and signed requests get 404.
    secret_key: Annotated[str, msgspec.Meta(min_length=1)] | None = None


class KeystoneAuthtokenSettings(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    """``auth_strategy = "keystone"``: Zaqar's ``[keystone_authtoken]`` option names."""

    # Sent to clients in ``WWW-Authenticate: Keystone uri="..."`` on a 401.
    www_authenticate_uri: str | None = None
    # Where the service's own session authenticates and validates tokens (Keystone v3).
    auth_url: str | None = None
    username: str | None = None
    password: str | None = None
    project_name: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region_name: str | None = None
    # Ours: seconds a validated token is trusted without asking Keystone again (never
    # past the token's own expiry), and how many validations the cache holds.
    token_cache_time: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 300.0
    token_cache_size: Positive = 10000


class AuthSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``auth_strategy = "tokens"``: static API tokens."""

    # A file mapping token hashes to a project, a user and roles (``tidings token create``).
    tokens_file: str | None = None


class OsloPolicySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Zaqar's ``[oslo_policy]`` group: a policy file overriding the default rules."""

    policy_file: str | None = None


class CorsSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """oslo.middleware's ``[cors]`` group; CORS is off while ``allowed_origin`` is unset.

    ``allowed_origin`` lists origins (``https://app.example.com``) or ``*``. The other
    defaults are Zaqar's; allow_headers adds X-Project-ID and the signed-URL headers, so
    that browsers can use noauth projects and pre-signed URLs too.
    """

    allowed_origin: list[str] = msgspec.field(default_factory=list)
    allow_credentials: bool = True
    expose_headers: list[str] = msgspec.field(
        default_factory=lambda: [
            "X-Auth-Token",
            "X-Subject-Token",
            "X-Service-Token",
            "X-OpenStack-Request-ID",
        ]
    )
    # Seconds a browser may cache a preflight's answer (0: not sent).
    max_age: Annotated[int, msgspec.Meta(ge=0)] = 3600
    allow_methods: list[str] = msgspec.field(
        default_factory=lambda: ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]
    )
    allow_headers: list[str] = msgspec.field(
        default_factory=lambda: [
            "X-Auth-Token",
            "X-Identity-Status",
            "X-Roles",
            "X-Service-Catalog",
            "X-User-Id",
            "X-Tenant-Id",
            "X-OpenStack-Request-ID",
            "X-Trace-Info",
            "X-Trace-HMAC",
            "Client-id",
            "X-Project-ID",
            "URL-Signature",
            "URL-Expires",
            "URL-Methods",
            "URL-Paths",
        ]
    )


class WebsocketSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Zaqar's WebSocket API (served at ``/`` and ``/v2/ws`` on the HTTP port)."""

    # Also serve it on this port, at any path, as Zaqar's separate process does (0: off).
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    # Largest frame answered; a larger one gets an error frame (default: the largest
    # message post plus room for the frame around it). Frames past four times this
    # close the connection (1009), so one frame never costs more memory than that.
    max_frame_size: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] | None = None
    # Frames a connection may send per second (a token bucket of this size); past it
    # a frame gets a 429 error frame.
    max_frames_per_second: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 100.0
    # Frames waiting to be written to a connection; a reader slower than that is
    # closed with 1008 instead of growing the server's memory.
    max_send_queue: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    # ... and bytes waiting (text length for text frames); a single frame always fits.
    max_send_queue_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024**3)] = 4 * 1024 * 1024
    # Connections per worker process; past it an upgrade is refused.
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 20_000
    # (H6, push) A connection's push subscription is stored for at most this many
    # seconds and renewed while the connection lives, so a node that dies leaks none
    # for longer than this.
    push_lease: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 60


class MetricsSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Prometheus metrics (issue 13): ``GET /metrics``."""

    enabled: bool = False
    # Set: /metrics is served on this port instead, without auth (a private scrape network).
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    # Per-queue gauges (depth by state, oldest age) are opt-in per project: label
    # cardinality stays what the operator chose, and a scrape reads no other project.
    queue_gauge_projects: list[str] = msgspec.field(default_factory=list)
    # At most this many queues get gauges, over all those projects (each costs a stats read).
    max_queue_gauges: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 100


class SqsSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The SQS-compatible API (issue 14), served on the HTTP port (``POST /``)."""

    enabled: bool = True
    # Also serve it on this port (any path), e.g. for SDKs configured with a bare endpoint.
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    # Where queue URLs point (``<base_url>/<project>/<queue>``); unset: the scheme and
    # Host of the request, so a client gets URLs back at the address it called.
    base_url: str | None = None
    # The region in queue ARNs, and the one signatures are expected for (any is accepted).
    region: str = "us-east-1"
    # How far a signed request's X-Amz-Date may be from the server's clock (SigV4).
    max_clock_skew: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 900


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # Who may call: "noauth" trusts X-Project-ID and X-Roles (admin only with admin_mode),
    # "keystone" validates X-Auth-Token, "tokens" checks static API tokens.
    auth_strategy: Literal["noauth", "keystone", "tokens"] = "noauth"
    admin_mode: bool = False
    # Spread queues over the pools of the management store's catalog (issue 11).
    pooling: bool = False
    enable_checksum: bool = False
    transport: TransportSettings = msgspec.field(default_factory=TransportSettings)
    drivers: DriverSettings = msgspec.field(default_factory=DriverSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    signed_url: SignedUrlSettings = msgspec.field(default_factory=SignedUrlSettings)
    notification: NotificationSettings = msgspec.field(default_factory=NotificationSettings)
    keystone_authtoken: KeystoneAuthtokenSettings = msgspec.field(
        default_factory=KeystoneAuthtokenSettings
    )
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    oslo_policy: OsloPolicySettings = msgspec.field(default_factory=OsloPolicySettings)
    cors: CorsSettings = msgspec.field(default_factory=CorsSettings)
    websocket: WebsocketSettings = msgspec.field(default_factory=WebsocketSettings)
    pooling_catalog: PoolingCatalogSettings = msgspec.field(
        default_factory=PoolingCatalogSettings
    )
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    sqs: SqsSettings = msgspec.field(default_factory=SqsSettings)


DEFAULT_WITHIN_MAXIMUM = (
    ("default_message_ttl", "max_message_ttl"),
    ("default_message_delay", "max_message_delay"),
    ("default_claim_ttl", "max_claim_ttl"),
    ("default_claim_grace", "max_claim_grace"),
)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_FILE_ENV:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        section, sep, option = name.partition("__")
        parsed = _env_value(value)
        if sep:
            tree.setdefault(section, {})[option] = parsed
        else:
            tree[name] = parsed
    return tree


def _env_value(raw: str) -> Any:
    """Lists come as JSON arrays (``'["http", "https"]'``); everything else as text."""
    if raw.startswith("["):
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return raw  # let validation say what is wrong with it
        if isinstance(value, list):
            return value
    return raw


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the TOML file (if any), overlay environment variables, validate the result."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(CONFIG_FILE_ENV) or None
    tree: dict[str, Any] = {}
    if config_file:
        try:
            tree = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {config_file}: {exc}") from exc
    tree = _merge(tree, _env_overrides(environ))
    try:
        # strict=False lets "64" and "true" from the environment become int and bool.
        settings = msgspec.convert(tree, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
    transport = settings.transport
    if transport.min_length_client_id > transport.max_length_client_id:
        raise ConfigError("transport.min_length_client_id exceeds max_length_client_id")
    # A default past its maximum would make every request that relies on it fail.
    for default, maximum in DEFAULT_WITHIN_MAXIMUM:
        if getattr(transport, default) > getattr(transport, maximum):
            raise ConfigError(f"transport.{default} exceeds transport.{maximum}")
    if settings.notification.require_confirmation and not settings.signed_url.secret_key:
        raise ConfigError(
            "notification.require_confirmation needs signed_url.secret_key: confirmation "
            "links are signed URLs"
        )
    _check_extra_ports(settings)
    return settings


def _check_extra_ports(settings: Settings) -> None:
    """The optional ports (WebSocket, metrics, SQS) differ from each other: every worker
    binds each with SO_REUSEPORT, so two of them on one port would split its connections.
    (One on the HTTP port fails to bind at start-up; ``serve --port`` may move that one.)"""
    named = [("websocket.port", settings.websocket.port or None)]
    named.append(("metrics.port", settings.metrics.port))
    named.append(("sqs.port", settings.sqs.port if settings.sqs.enabled else None))
    seen: dict[int, str] = {}
    for name, port in named:
        if not port:
            continue
        if port in seen:
            raise ConfigError(f"{name} is the same port as {seen[port]} ({port})")
        seen[port] = name
