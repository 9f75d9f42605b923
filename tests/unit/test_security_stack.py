"""The secure local stack's pieces that need no service: certificates, passwords, configs, env."""

from __future__ import annotations

import os
import re
import shlex
import ssl
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runstream._settings import Settings
from runstream.cli import app
from runstream.deploy import local
from runstream.deploy.local._kafka import argument_file, merge_properties
from runstream.deploy.local._secure import SecureFolder, scram_sha_256_verifier
from runstream.deploy.local._service import fill

SECRET_VARIABLES = {
    "RUNSTREAM_KAFKA_SASL_PASSWORD",
    "RUNSTREAM_DATABASE_URL",
    "RUNSTREAM_DATABASE_READ_URL",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("RUNSTREAM_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def secure(tmp_path: Path) -> local.StackConfig:
    return local.StackConfig(state_dir=tmp_path / "stack", secure=True)


def properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    keys = [line.split("=", 1)[0] for line in lines]
    assert len(keys) == len(set(keys)), "a key is set twice"
    return dict(line.split("=", 1) for line in lines)


# -- certificates: what a verify-full client accepts and refuses -----------------------------------


def handshake(folder: SecureFolder, *, trust: Path, server_name: str) -> None:
    """A TLS handshake in memory: the server presents the stack's certificate; the client checks
    it against `trust` and `server_name` as aiokafka and asyncpg (verify-full) do."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(folder.certificate, folder.key)
    client_context = ssl.create_default_context(cafile=trust)
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]
    client = client_context.wrap_bio(*pipes[0], server_hostname=server_name)
    server = server_context.wrap_bio(*pipes[1], server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        pipes[1][0].write(pipes[0][1].read())  # client → server
        pipes[0][0].write(pipes[1][1].read())  # server → client
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[SecureFolder, SecureFolder]:
    root = tmp_path_factory.mktemp("tls")
    return SecureFolder(root / "one").ensure(), SecureFolder(root / "two").ensure()


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "::1"])
def test_the_server_certificate_passes_for_the_loopback_names(
    folders: tuple[SecureFolder, SecureFolder], name: str
) -> None:
    folder = folders[0]
    handshake(folder, trust=folder.ca, server_name=name)


def test_another_name_fails_verify_full(folders: tuple[SecureFolder, SecureFolder]) -> None:
    folder = folders[0]
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(folder, trust=folder.ca, server_name="127.0.0.2")


def test_another_ca_fails(folders: tuple[SecureFolder, SecureFolder]) -> None:
    one, two = folders
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(one, trust=two.ca, server_name="127.0.0.1")


def test_the_folder_is_private_and_made_once(tmp_path: Path) -> None:
    folder = SecureFolder(tmp_path / "secure").ensure()
    first = folder.secrets()
    assert SecureFolder(tmp_path / "secure").ensure().secrets() == first
    assert folder.path.stat().st_mode & 0o777 == 0o700
    for private in (folder.key, folder.password_file):
        assert private.stat().st_mode & 0o777 == 0o600
    assert len(set(first.passwords())) == 8  # admin, three PostgreSQL roles, four Kafka roles
    assert all(len(p) >= 32 for p in first.passwords())
    assert not any(p in repr(first) for p in first.passwords())
    assert [p.name for p in tmp_path.iterdir()] == ["secure"]  # no scratch folder left


def test_scram_verifier_is_postgres_form_and_salted() -> None:
    verifier = scram_sha_256_verifier("hunter2-hunter2")
    assert re.fullmatch(
        r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}", verifier
    )
    assert "hunter2" not in verifier
    assert scram_sha_256_verifier("hunter2-hunter2") != verifier


# -- configs: Kafka's listener, and the format arguments ------------------------------------------


def test_secure_kafka_speaks_sasl_ssl_scram_to_clients_and_itself(tmp_path: Path) -> None:
    ports = {"port": 29192, "controller_port": 29193}
    one_node = {"node_id": 1, "nodes": 1, "voters": "1@127.0.0.1:29193"}
    one_node |= {"replication": 1, "min_isr": 1}
    base = fill("kafka-server.properties", data_dir=tmp_path / "data", **one_node, **ports)
    overrides = fill(
        "kafka-server-secure.properties",
        admin_user="runstream-admin",
        admin_password="pw",
        keystore=tmp_path / "keystore.pem",
        truststore=tmp_path / "ca.pem",
        **ports,
    )
    config = properties(merge_properties(base, overrides))
    assert config["listeners"] == "SECURE://127.0.0.1:29192,CONTROLLER://127.0.0.1:29193"
    assert config["advertised.listeners"] == "SECURE://127.0.0.1:29192"
    assert config["listener.security.protocol.map"] == "SECURE:SASL_SSL,CONTROLLER:SSL"
    assert config["listener.name.controller.ssl.client.auth"] == "required"
    assert config["inter.broker.listener.name"] == "SECURE"
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert config["auto.create.topics.enable"] == "false"  # the rest of the base stays
    assert "PLAINTEXT://" not in merge_properties(base, overrides)


def test_format_arguments_go_through_a_private_file(tmp_path: Path) -> None:
    arguments = ["--add-scram", 'SCRAM-SHA-512=[name=a,password=p"w\\x]']
    with argument_file(tmp_path / "format.args", arguments) as path:
        assert path.stat().st_mode & 0o777 == 0o600
        lines = path.read_text().splitlines()
    assert [shlex.split(line)[0] for line in lines] == [
        "--add-scram",
        'SCRAM-SHA-512=[name=a,password=p"w\\x]',
    ]
    assert not path.exists()


# -- env: the export lines, the only place the stack prints a secret ------------------------------


def test_secure_env_points_clients_at_sasl_ssl_and_verify_full(secure: local.StackConfig) -> None:
    env = secure.env()
    ca = str(secure.secure_folder.ca)
    assert env["RUNSTREAM_STACK_SECURE"] == "true"
    assert env["RUNSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["RUNSTREAM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["RUNSTREAM_KAFKA_SASL_USERNAME"] == "runstream"
    assert env["RUNSTREAM_KAFKA_SSL_CAFILE"] == ca
    for name in ("RUNSTREAM_DATABASE_URL", "RUNSTREAM_DATABASE_READ_URL"):
        assert env[name].endswith(f"?sslmode=verify-full&sslrootcert={ca}")
    assert secure.secrets().kafka_admin not in "".join(env.values())


def test_secure_env_round_trips_through_settings(
    secure: local.StackConfig, clean_env: pytest.MonkeyPatch
) -> None:
    declared = {f"RUNSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert set(secure.env()) <= declared
    for name, value in secure.env().items():
        clean_env.setenv(name, value)
    settings = Settings()
    assert local.StackConfig.from_settings(settings) == secure
    assert settings.kafka() == secure.kafka()
    assert settings.database().url == secure.database_url()


def test_plain_env_has_no_credentials(tmp_path: Path) -> None:
    env = local.StackConfig(state_dir=tmp_path).env()
    assert env["RUNSTREAM_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert env["RUNSTREAM_STACK_SECURE"] == "false"
    assert not [name for name in env if "SASL" in name or "SSL_" in name]
    assert not (tmp_path / "secure").exists()


def test_stack_env_prints_secrets_only_in_their_export_lines(
    secure: local.StackConfig, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("RUNSTREAM_STACK_DIR", str(secure.state_dir))
    clean_env.setenv("RUNSTREAM_STACK_SECURE", "true")
    result = CliRunner().invoke(app, ["stack", "env"])
    assert result.exit_code == 0, result.output
    passwords = secure.secrets().passwords()
    carrying = set()
    for line in result.stdout.splitlines():
        name = line.removeprefix("export ").partition("=")[0]
        assert line.startswith("export RUNSTREAM_"), line
        if any(p in line for p in passwords):
            carrying.add(name)
    assert carrying == SECRET_VARIABLES
    assert not any(p in result.stderr for p in passwords)
