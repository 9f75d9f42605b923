"""A command group that is also a command: `runstream runs [OPTIONS]` lists, `runs delete` deletes.

Its first argument picks a subcommand when it names one; otherwise the arguments go to the
group's default subcommand, so the old spelling keeps working.
"""

from __future__ import annotations

from typing import Any, ClassVar

import typer
from typer.core import TyperGroup


class DefaultCommandGroup(TyperGroup):
    """A group whose arguments, when they name no subcommand, belong to `default_command`."""

    default_command: ClassVar[str] = "list"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Route arguments that name no subcommand (but a bare `--help`) to the default."""
        if not args or (args[0] not in self.commands and args != ["--help"]):
            args = [self.default_command, *args]
        parsed: list[str] = super().parse_args(ctx, args)
        return parsed


def group_with_default(help_text: str) -> typer.Typer:
    """A `typer.Typer` group whose bare invocation runs its `list` subcommand."""
    return typer.Typer(help=help_text, cls=DefaultCommandGroup, no_args_is_help=False)
