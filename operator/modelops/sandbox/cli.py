"""``modelops sandbox`` sub-commands (up, down, logs, trigger, url)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def up() -> None:
    """Start the sandbox (not implemented yet)."""
    raise typer.Exit(1)
