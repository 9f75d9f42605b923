"""The Prometheus and PostgreSQL datasources, as Grafana's API and provisioning files take them.

The dashboards refer to them by fixed uids, so a datasource is the same one whether it came from
the provisioning files (Docker users, a local `grafana`) or from `runstream grafana push`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from runstream._errors import ConfigError
from runstream.deploy.grafana._targets import POSTGRES_TYPE, POSTGRES_UID, PROMETHEUS_UID

PROMETHEUS_NAME = "runstream-prometheus"
POSTGRES_NAME = "runstream-postgres"


@dataclass(frozen=True, slots=True)
class PostgresSource:
    """Where Grafana reads PostgreSQL, as the read-only role."""

    address: str
    """host:port as seen from Grafana."""
    database: str
    user: str
    password: str = field(repr=False)
    sslmode: str = "disable"
    """The URL's TLS mode (libpq's `sslmode`); a URL without one is a plain local connection."""
    sslrootcert: str | None = None
    """The CA file that `verify-ca` and `verify-full` check the server against."""

    @classmethod
    def from_url(cls, url: str) -> PostgresSource:
        """From a libpq URL such as `postgresql://runstream_reader:…@127.0.0.1:15432/runstream`."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ConfigError(
                f"postgres url {parts.scheme}://{parts.hostname}…: expected postgresql://user:password@host:port/db"
            )
        if not parts.username or not parts.path.strip("/"):
            raise ConfigError("postgres url: expected a user and a database name")
        return cls(
            address=f"{parts.hostname}:{parts.port or 5432}",
            database=parts.path.strip("/"),
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            sslmode=query.get("sslmode", ["disable"])[-1],
            sslrootcert=query.get("sslrootcert", [None])[-1],
        )

    def tls_settings(self) -> dict[str, object]:
        """The datasource's `jsonData` entries for TLS: the URL's mode, and its CA when given."""
        settings: dict[str, object] = {"sslmode": self.sslmode}
        if self.sslrootcert:
            settings |= {"tlsConfigurationMethod": "file-path", "sslRootCertFile": self.sslrootcert}
        return settings


def datasources(prometheus_url: str, postgres: PostgresSource) -> list[dict[str, object]]:
    """Both datasources as Grafana's `/api/datasources` and provisioning files describe them."""
    return [
        {
            "name": PROMETHEUS_NAME,
            "uid": PROMETHEUS_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": prometheus_url,
            "isDefault": True,
            "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
        },
        {
            "name": POSTGRES_NAME,
            "uid": POSTGRES_UID,
            "type": POSTGRES_TYPE,
            "access": "proxy",
            "url": postgres.address,
            "user": postgres.user,
            "isDefault": False,
            "jsonData": {
                "database": postgres.database,
                **postgres.tls_settings(),
                "postgresVersion": 1500,
                "timescaledb": False,
                "maxOpenConns": 10,
            },
            "secureJsonData": {"password": postgres.password},
        },
    ]
