"""Settings: Zaqar's defaults, TOML, environment overrides and start-up validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.config import ConfigError, load_settings


def test_defaults_equal_zaqars_limits() -> None:
    settings = load_settings(environ={})
    t = settings.transport
    assert (t.max_queue_metadata, t.max_messages_post_size) == (65536, 262144)
    assert (t.max_messages_per_page, t.max_queues_per_page) == (20, 20)
    assert (t.max_message_ttl, t.default_message_ttl, t.max_message_delay) == (1209600, 3600, 900)
    assert (t.max_claim_ttl, t.max_claim_grace) == (43200, 43200)
    assert (t.default_claim_ttl, t.default_claim_grace) == (300, 60)
    assert t.client_id_uuid_safe == "strict"
    assert t.message_delete_with_claim_id is False
    assert settings.admin_mode is False
    assert settings.drivers.message_store.startswith("sqlite:///")


def test_toml_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text(
        'admin_mode = true\n[transport]\nmax_queue_metadata = 100\nmax_messages_per_page = 5\n'
        '[drivers]\nmessage_store = "sqlite:///x.db"\n'
    )
    settings = load_settings(
        config,
        environ={
            "TIDINGS_TRANSPORT__MAX_QUEUE_METADATA": "64",
            "TIDINGS_ENABLE_CHECKSUM": "true",
            "TIDINGS_DRIVERS__MESSAGE_STORE": "sqlite:///y.db",
        },
    )
    assert settings.transport.max_queue_metadata == 64
    assert settings.transport.max_messages_per_page == 5
    assert settings.admin_mode is True
    assert settings.enable_checksum is True
    assert settings.drivers.message_store == "sqlite:///y.db"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[transport]\nclient_id_uuid_safe = \"off\"\n")
    settings = load_settings(environ={"TIDINGS_CONFIG": str(config)})
    assert settings.transport.client_id_uuid_safe == "off"


@pytest.mark.parametrize(
    "environ",
    [
        {"TIDINGS_TRANSPORT__MAX_QUEUE_METADATA": "lots"},
        {"TIDINGS_TRANSPORT__MAX_MESSAGE_TTL": "10"},
        {"TIDINGS_TRANSPORT__CLIENT_ID_UUID_SAFE": "sometimes"},
        {"TIDINGS_TRANSPORT__NO_SUCH_OPTION": "1"},
        {"TIDINGS_NO_SUCH_SECTION__X": "1"},
        {"TIDINGS_ADMIN_MODE": "perhaps"},
        {"TIDINGS_TRANSPORT__MIN_LENGTH_CLIENT_ID": "40"},
        {"TIDINGS_SQS__PORT": "9324", "TIDINGS_WEBSOCKET__PORT": "9324"},
        {"TIDINGS_SQS__PORT": "9100", "TIDINGS_METRICS__PORT": "9100"},
        {"TIDINGS_SQS__PORT": "0"},
    ],
)
def test_invalid_settings_are_refused_at_startup(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ=environ)


def test_unreadable_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[transport\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", environ={})
