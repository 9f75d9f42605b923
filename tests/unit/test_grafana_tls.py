"""Grafana's PostgreSQL datasource keeps the TLS mode of the URL it is made from."""

from __future__ import annotations

from runstream.deploy import grafana


def postgres_json(url: str) -> dict[str, object]:
    source = grafana.PostgresSource.from_url(url)
    (_, postgres) = grafana.datasources("http://127.0.0.1:9090", source)
    data = postgres["jsonData"]
    assert isinstance(data, dict)
    return data


def test_a_verify_full_url_gives_a_verify_full_datasource_with_its_ca() -> None:
    data = postgres_json(
        "postgresql://reader:pw@127.0.0.1:5432/runstream?sslmode=verify-full&sslrootcert=/s/ca.pem"
    )
    assert data["sslmode"] == "verify-full"
    assert data["sslRootCertFile"] == "/s/ca.pem"
    assert data["tlsConfigurationMethod"] == "file-path"


def test_a_url_without_a_mode_stays_a_plain_local_connection() -> None:
    data = postgres_json("postgresql://reader:pw@127.0.0.1:5432/runstream")
    assert data["sslmode"] == "disable"
    assert "sslRootCertFile" not in data
