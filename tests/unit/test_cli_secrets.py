"""No command takes a secret on its command line, where every user of the machine can read it."""

from __future__ import annotations

from typing import Any

import typer

from runstream.cli import app

SECRET_WORDS = ("password", "token", "secret", "url")
"""Option names that would carry a secret (a database URL carries its password)."""
ALLOWED: dict[tuple[str, ...], set[str]] = {("grafana", "push"): {"--url", "--prometheus-url"}}
"""Options whose name matches but whose value is not secret: Grafana's and Prometheus' addresses."""


def options_by_command() -> dict[tuple[str, ...], set[str]]:
    """Every option name of every command, keyed by the command's path."""
    found: dict[tuple[str, ...], set[str]] = {}

    def visit(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                visit(sub, (*path, name))
            return
        found[path] = {o for p in command.params for o in p.opts if o.startswith("--")}

    visit(typer.main.get_command(app), ())
    return found


def test_no_option_takes_a_password_token_or_database_url() -> None:
    commands = options_by_command()
    assert ("grafana", "push") in commands  # the walk reaches nested commands
    offending = {
        path: sorted(
            o for o in options - ALLOWED.get(path, set()) if any(w in o for w in SECRET_WORDS)
        )
        for path, options in commands.items()
    }
    assert {path: names for path, names in offending.items() if names} == {}
