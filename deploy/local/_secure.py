"""What a secure local stack (`StackConfig(secure=True)`) is made of: a CA, a server certificate
for the loopback names and random passwords, all under `<state>/secure/` (mode 0700).

    ca.pem          the CA clients trust (`RUNSTREAM_KAFKA_SSL_CAFILE`, `sslrootcert=`)
    server.crt      the certificate Kafka and PostgreSQL present (localhost, 127.0.0.1, ::1)
    server.key      its private key (0600); the CA's own key is never written anywhere
    passwords.json  the Kafka (SCRAM) and PostgreSQL role passwords (0600)

The folder is made once, whole, on first use (built beside it, then renamed into place), so two
processes asking at once agree on one set. Passwords reach the services through files and the
environment only, never a command line.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from runstream._errors import ConfigError

KAFKA_ADMIN_USER = "runstream-admin"
"""The broker's own SCRAM user (inter-broker listener) and the stack's admin client."""
KAFKA_CLIENT_USER = "runstream"
"""The SCRAM user of trainers (producers of the events topic) and of `runstream stack env`."""
KAFKA_ROLE_USERS = {
    "trainer": KAFKA_CLIENT_USER,
    "persist": "runstream-persist",
    "export": "runstream-export",
    "watchdog": "runstream-watchdog",
}
"""One SCRAM user per role (see `_acls` for what each may do)."""
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
_SCRAM_ITERATIONS = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class StackSecrets:
    """The passwords of one secure stack (never shown by `repr`)."""

    kafka_admin: str = dataclasses.field(repr=False)
    kafka_client: str = dataclasses.field(repr=False)
    postgres_admin: str = dataclasses.field(repr=False)
    postgres_writer: str = dataclasses.field(repr=False)
    postgres_reader: str = dataclasses.field(repr=False)
    kafka_persist: str = dataclasses.field(repr=False)
    kafka_export: str = dataclasses.field(repr=False)
    kafka_watchdog: str = dataclasses.field(repr=False)

    @classmethod
    def generate(cls) -> StackSecrets:
        """Fresh random passwords (URL-safe, so they fit a URL and a JAAS line unquoted)."""
        return cls(*(secrets.token_urlsafe(24) for _ in dataclasses.fields(cls)))

    def kafka_password(self, role: str) -> str:
        """The Kafka password of a role of `KAFKA_ROLE_USERS`."""
        chosen = {
            "trainer": self.kafka_client,
            "persist": self.kafka_persist,
            "export": self.kafka_export,
            "watchdog": self.kafka_watchdog,
        }
        return chosen[role]

    def passwords(self) -> tuple[str, ...]:
        """Every password, for checks that none leaks."""
        return (
            self.kafka_admin,
            self.kafka_client,
            self.postgres_admin,
            self.postgres_writer,
            self.postgres_reader,
            self.kafka_persist,
            self.kafka_export,
            self.kafka_watchdog,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SecureFolder:
    """The files of `<state>/secure/`; `ensure()` makes them on first use."""

    path: Path

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust."""
        return self.path / "ca.pem"

    @property
    def certificate(self) -> Path:
        """The server certificate (loopback names)."""
        return self.path / "server.crt"

    @property
    def key(self) -> Path:
        """The server certificate's private key (PKCS#8, unencrypted, 0600)."""
        return self.path / "server.key"

    @property
    def password_file(self) -> Path:
        """The passwords (JSON, 0600)."""
        return self.path / "passwords.json"

    def ensure(self) -> SecureFolder:
        """Make the folder (CA, certificate, key, passwords) unless it exists; return self."""
        if self.password_file.exists():
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".secure-", dir=self.path.parent))
        try:
            _write_folder(SecureFolder(scratch))
            os.rename(scratch, self.path)
        except OSError:
            if not self.password_file.exists():  # not another process winning the race
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self

    def secrets(self) -> StackSecrets:
        """The stack's passwords."""
        try:
            values = json.loads(self.ensure().password_file.read_text())
            return StackSecrets(**values)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"secure stack: cannot read {self.password_file}: {exc}") from exc


def scram_sha_256_verifier(password: str, iterations: int = _SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of `password`, as psql's `password` command sends it.

    The server never sees the password itself, and neither does its log. ASCII passwords only
    (no SASLprep).
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file readable by its owner only (0600 from the start)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _write_folder(folder: SecureFolder) -> None:
    try:
        from runstream.deploy.local._certificates import issue  # noqa: PLC0415
    except ImportError as exc:
        message = "secure=True needs the `cryptography` package: pip install 'runstream[dev]'"
        raise ConfigError(message) from exc
    folder.path.chmod(0o700)
    ca_pem, cert_pem, key_pem = issue(SERVER_NAMES)
    folder.ca.write_bytes(ca_pem)
    folder.certificate.write_bytes(cert_pem)
    write_private(folder.key, key_pem)
    values = dataclasses.asdict(StackSecrets.generate())
    write_private(folder.password_file, json.dumps(values, indent=2).encode())
