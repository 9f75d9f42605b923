"""The `runstream` command line: one entry point, a thin layer over the components it drives."""

from runstream.cli._app import app, main

__all__ = ["app", "main"]
