"""The local stack's config: defaults agree with Settings, env round-trips, ports are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream import ConfigError
from runstream._settings import Settings
from runstream.deploy import local
from runstream.deploy.local._config import http_url

CUSTOM = local.StackConfig(
    state_dir=Path("/tmp/runstream-second"),
    kafka_port=29192,
    kafka_controller_port=29193,
    postgres_port=25532,
    prometheus_port=29190,
    alertmanager_port=29195,
    exporter_address="127.0.0.1:29200",
    persist_health_address="127.0.0.1:29201",
    watchdog_health_address="127.0.0.1:29202",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(__import__("os").environ):
        if name.startswith("RUNSTREAM_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_default_stack_is_where_settings_point(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    points = local.StackConfig.from_settings(settings).endpoints()
    assert points.bootstrap_servers == settings.bootstrap_servers
    assert points.writer_url == settings.database_url.get_secret_value()
    assert points.reader_url == settings.database_read_url.get_secret_value()
    assert points.prometheus_url == settings.prometheus_url
    assert points.alertmanager_url == settings.alertmanager_url
    assert points.exporter_url == "http://" + settings.exporter_address


def test_env_names_are_declared_settings() -> None:
    declared = {f"RUNSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert set(CUSTOM.env()) <= declared


def test_env_round_trips_through_settings(clean_env: pytest.MonkeyPatch) -> None:
    assert "RUNSTREAM_DATABASE_ADMIN_URL" not in CUSTOM.env()
    for name, value in CUSTOM.env(admin=True).items():
        clean_env.setenv(name, value)
    settings = Settings()
    assert local.StackConfig.from_settings(settings) == CUSTOM
    assert settings.database_url.get_secret_value() == CUSTOM.endpoints().writer_url
    assert settings.database_admin_url is not None
    assert settings.database_admin_url.get_secret_value() == CUSTOM.endpoints().admin_url


def test_relative_state_dir_becomes_absolute() -> None:
    assert local.StackConfig(state_dir=Path(".stack")).state_dir == Path.cwd() / ".stack"


def test_two_services_on_one_port_are_refused() -> None:
    with pytest.raises(ConfigError, match="distinct ports"):
        local.StackConfig(prometheus_port=19092)
    with pytest.raises(ConfigError, match="distinct ports"):
        local.StackConfig(exporter_address="127.0.0.1:15432")


def test_bad_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="exporter_address"):
        local.StackConfig(exporter_address="localhost")


def test_database_url_names_a_known_role() -> None:
    with pytest.raises(ConfigError, match="role"):
        CUSTOM.database_url("postgres")


def test_secrets_stay_out_of_repr() -> None:
    assert "local@" not in repr(CUSTOM.endpoints())


def test_wildcard_bind_is_reached_on_the_loopback() -> None:
    assert http_url("0.0.0.0:19100") == "http://127.0.0.1:19100"
    assert http_url("10.0.0.5:19100") == "http://10.0.0.5:19100"
