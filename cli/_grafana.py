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
from runstream.cli._exits import CommandError, ExitCode, reports_errors

app = typer.Typer(help="Grafana dashboards as code: build and push.", no_args_is_help=True)

_EXTRA = "the grafana commands need the grafana extra: pip install 'runstream[grafana]'"


@app.command("build")
@reports_errors
def build_command(
    check: Annotated[
        bool, typer.Option("--check", help="Only report stale files; exit 9 if any.")
    ] = False,
) -> None:
    """Regenerate deploy/grafana/dashboards/*.json and the provisioning files from the source."""
    grafana = _grafana()
    if check:
        stale = grafana.stale_files()
        for path in stale:
            typer.echo(f"stale: {grafana.HERE / path}")
        if stale:
            raise CommandError(
                f"{len(stale)} generated files are stale",
                "Regenerate them with `runstream grafana build`.",
                ExitCode.STALE,
            )
        return
    written = grafana.write_files()
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo("generated files are up to date")


@app.command("push")
@reports_errors
def push_command(
    url: Annotated[
        str | None, typer.Option(help="Grafana's base URL [default: RUNSTREAM_GRAFANA_URL]")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="Basic auth user [default: RUNSTREAM_GRAFANA_USER]; the password comes from "
            "RUNSTREAM_GRAFANA_PASSWORD or a prompt"
        ),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Prometheus as Grafana reaches it [default: RUNSTREAM_PROMETHEUS_URL]"),
    ] = None,
) -> None:
    """Create or update the two datasources and the dashboards in a running Grafana.

    Secrets never come from the command line, where other users of the machine see them: the
    token from RUNSTREAM_GRAFANA_TOKEN, a password from RUNSTREAM_GRAFANA_PASSWORD or a prompt,
    the read-only PostgreSQL URL from RUNSTREAM_GRAFANA_POSTGRES_URL (then
    RUNSTREAM_DATABASE_READ_URL).
    """
    grafana = _grafana()
    settings = Settings()
    url = url or settings.grafana_url
    if not url:
        raise CommandError("no Grafana to push to", "Give --url or set RUNSTREAM_GRAFANA_URL.")
    token = _secret(settings.grafana_token)
    user = user or settings.grafana_user
    password = _secret(settings.grafana_password)
    if user and not password:
        password = typer.prompt("Grafana password", hide_input=True)
    postgres_url = _secret(settings.grafana_postgres_url) or _secret(settings.database_read_url)
    try:
        target = grafana.GrafanaTarget(url=url, token=token, user=user, password=password)
        source = grafana.PostgresSource.from_url(postgres_url or "")
    except ValueError as exc:
        raise CommandError(str(exc), "See `runstream grafana push --help`.") from exc
    sources = grafana.datasources(prometheus_url or settings.prometheus_url, source)
    try:
        report = grafana.push(target, sources, list(grafana.dashboard_models().values()))
    except grafana.GrafanaPushError as exc:
        raise CommandError(str(exc), None, ExitCode.GRAFANA) from exc
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
        raise CommandError(f"{_EXTRA} ({exc})") from exc
    return grafana
