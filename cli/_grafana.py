"""`runstream grafana` commands: build the dashboards' JSON, push them to a Grafana.

The grafana extra (`pip install 'runstream[grafana]'`) is imported only when a command runs, so
the rest of the CLI works without it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated

import typer
from pydantic import SecretStr

from runstream._settings import Settings

app = typer.Typer(help="Grafana dashboards as code: build and push.", no_args_is_help=True)

_EXTRA = "the grafana commands need the grafana extra: pip install 'runstream[grafana]'"


@app.command("build")
def build_command(
    check: Annotated[
        bool, typer.Option("--check", help="Only report stale files; exit 1 if any.")
    ] = False,
) -> None:
    """Regenerate deploy/grafana/dashboards/*.json and the provisioning files from the source."""
    grafana = _grafana()
    if check:
        stale = grafana.stale_files()
        for path in stale:
            typer.echo(f"stale: {grafana.HERE / path}")
        raise typer.Exit(1 if stale else 0)
    written = grafana.write_files()
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo("generated files are up to date")


@app.command("push")
def push_command(
    url: Annotated[
        str | None, typer.Option(help="Grafana's base URL [default: RUNSTREAM_GRAFANA_URL]")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Service account token (prefer RUNSTREAM_GRAFANA_TOKEN: argv is visible to "
            "other users).",
        ),
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Basic auth user [default: RUNSTREAM_GRAFANA_USER]")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(help="Basic auth password (prefer RUNSTREAM_GRAFANA_PASSWORD)."),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Prometheus as Grafana reaches it [default: RUNSTREAM_PROMETHEUS_URL]"),
    ] = None,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL read-only URL as Grafana reaches it "
            "[default: RUNSTREAM_GRAFANA_POSTGRES_URL, then RUNSTREAM_DATABASE_READ_URL]",
        ),
    ] = None,
) -> None:
    """Create or update the two datasources and the dashboards in a running Grafana."""
    grafana = _grafana()
    settings = Settings()
    url = url or settings.grafana_url
    if not url:
        raise typer.BadParameter("give --url or set RUNSTREAM_GRAFANA_URL", param_hint="--url")
    token = token or _secret(settings.grafana_token)
    user = user or settings.grafana_user
    password = password or _secret(settings.grafana_password)
    postgres_url = postgres_url or _secret(settings.grafana_postgres_url)
    if user and not password:
        password = typer.prompt("Grafana password", hide_input=True)
    try:
        target = grafana.GrafanaTarget(url=url, token=token, user=user, password=password)
        source = grafana.PostgresSource.from_url(
            postgres_url or settings.database_read_url.get_secret_value()
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    sources = grafana.datasources(prometheus_url or settings.prometheus_url, source)
    try:
        report = grafana.push(target, sources, list(grafana.dashboard_models().values()))
    except grafana.GrafanaPushError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for name in report.datasources:
        typer.echo(f"datasource {name}")
    for title in report.dashboards:
        typer.echo(f"dashboard {title}")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _grafana() -> ModuleType:
    """`runstream.deploy.grafana`, imported late: it needs the grafana extra."""
    try:
        from runstream.deploy import grafana  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        typer.echo(f"error: {_EXTRA} ({exc})", err=True)
        raise typer.Exit(2) from exc
    return grafana
