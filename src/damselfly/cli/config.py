"""`damselfly config`: the configuration file's reference, and a check of a file."""

from __future__ import annotations

from pathlib import Path

import typer

from damselfly import config as config_file

app = typer.Typer(
    help="Configuration files: `reference` prints every key, `check` reads a file.",
    no_args_is_help=True,
)


@app.command("reference")
def reference() -> None:
    """Print the configuration reference (Markdown), generated from the settings."""
    print(config_file.reference(), end="")


@app.command("check")
def check(
    path: Path = typer.Argument(..., help="The TOML file, e.g. /etc/damselfly/damselfly.toml."),
) -> None:
    """Read a configuration file the way the services will; exit 1 on the first problem."""
    for line in config_file.check(path):
        print(line)
