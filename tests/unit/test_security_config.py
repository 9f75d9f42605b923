"""Secrets stay out of reprs and error messages; security settings reach every aiokafka client."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from runstream import ConfigError
from runstream._config import DatabaseConfig, KafkaConfig
from runstream._settings import Settings
from runstream.deploy.local._secure import SecureFolder

PASSWORD = "s3cret-Pa55word-xyz"
URL = f"postgresql://writer:{PASSWORD}@db.example:5432/runstream?sslmode=verify-full"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(SecureFolder(tmp_path_factory.mktemp("tls") / "secure").ensure().ca)


def scram(ca_file: str, **changes: object) -> KafkaConfig:
    values: dict[str, object] = {
        "bootstrap_servers": "broker.example:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice",
        "sasl_password": PASSWORD,
        "ssl_cafile": ca_file,
    }
    return KafkaConfig(**(values | changes))  # type: ignore[arg-type]


def test_kafka_config_repr_hides_the_password(ca_file: str) -> None:
    config = scram(ca_file)
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)
    assert "alice" in repr(config)


def test_database_config_repr_hides_the_url() -> None:
    config = DatabaseConfig(url=URL)
    assert PASSWORD not in repr(config)
    assert "db.example" not in repr(config)


def test_settings_repr_hides_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTREAM_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("RUNSTREAM_DATABASE_URL", URL)
    monkeypatch.setenv("RUNSTREAM_DATABASE_READ_URL", URL.replace("writer", "reader"))
    monkeypatch.setenv("RUNSTREAM_DATABASE_ADMIN_URL", URL.replace("writer", "admin"))
    settings = Settings()
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert PASSWORD not in str(settings.model_dump())
    assert settings.database().url == URL


def test_sasl_ssl_scram_options_are_what_aiokafka_takes(ca_file: str) -> None:
    options = scram(ca_file).client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    # aiokafka names the SCRAM credentials `sasl_plain_*` as well
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("alice", PASSWORD)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


async def test_every_aiokafka_client_takes_the_options(ca_file: str) -> None:
    """An option aiokafka does not know is a TypeError when the client is built."""
    options = scram(ca_file).client_options()
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer("topic", group_id="g", enable_auto_commit=False, **options)
    admin = AIOKafkaAdminClient(**options)
    await producer.stop()
    await consumer.stop()
    await admin.close()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"sasl_mechanism": None}, "sasl_mechanism"),
        ({"sasl_username": None}, "sasl_username"),
        ({"sasl_password": None}, "sasl_password"),
        ({"sasl_mechanism": "SCRAM-SHA-1"}, "sasl_mechanism"),
        ({"security_protocol": "PLAINTEXT", "ssl_cafile": None}, "SASL_SSL"),
        ({"security_protocol": "SSL"}, "security_protocol=SSL"),
        ({"security_protocol": "TLS"}, "security_protocol"),
    ],
)
def test_bad_security_config_fails_naming_the_setting_never_the_password(
    ca_file: str, changes: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError) as error:
        scram(ca_file, **changes)
    assert named in str(error.value)
    assert PASSWORD not in str(error.value)


def test_tls_files_without_tls_fail() -> None:
    with pytest.raises(ConfigError, match="ssl_cafile"):
        KafkaConfig(ssl_cafile="/etc/ssl/ca.pem")


def test_unreadable_tls_files_fail_naming_the_file(ca_file: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"ssl_cafile=.*missing\.pem") as error:
        scram(ca_file, ssl_cafile=missing).client_options()
    assert PASSWORD not in str(error.value)
    with pytest.raises(ConfigError, match="ssl_certfile"):
        scram(ca_file, ssl_certfile=missing).client_options()


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://writer:{PASSWORD}@db.example/runstream",
        f"postgresql://writer:{PASSWORD}@db.example/runstream?sslmode=verify_full",
    ],
)
def test_bad_database_url_fails_without_showing_it(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        DatabaseConfig(url=url)
    assert PASSWORD not in str(error.value)


def test_database_url_takes_libpq_tls_parameters() -> None:
    url = f"{URL}&sslrootcert=/etc/runstream/ca.pem"
    assert DatabaseConfig(url=url).url == url
