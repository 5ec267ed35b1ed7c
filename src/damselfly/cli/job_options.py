"""What every CLI command that works through the manager's jobs shares: where the
manager is, who we are, registry credentials, and waiting for a job with progress."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from damselfly.cli.api_client import DEFAULT_MANAGER, ManagerClient, find_token
from damselfly.cli.options import default_data_dir
from damselfly.errors import InvalidInput

ManagerOpt = typer.Option(DEFAULT_MANAGER, "--manager", help="Manager URL.")
TokenOpt = typer.Option(None, "--token", help="API token (default: $DAMSELFLY_TOKEN or root's).")
DataDirOpt = typer.Option(None, "--data-dir", help="Where a local manager keeps root's token.")
ImageOpt = typer.Option(
    None,
    "--image-manifest-url",
    help="An image: http(s)://REGISTRY/v2/REPOSITORY/manifests/TAG_OR_DIGEST.",
)
PlatformOpt = typer.Option(
    None,
    "--platform",
    help="os/arch or os/arch/variant of a multi-platform image (default: this host's).",
)
UsernameOpt = typer.Option(None, "--username", help="Registry or origin user name.")
PasswordOpt = typer.Option(
    None,
    "--password",
    envvar="DAMSELFLY_REGISTRY_PASSWORD",
    help="Its password (default: $DAMSELFLY_REGISTRY_PASSWORD; asked for on a terminal).",
)


def manager_client(manager: str, token: str | None, data_dir: Path | None) -> ManagerClient:
    return ManagerClient(manager, find_token(token, data_dir or default_data_dir()))


def credentials(username: str | None, password: str | None) -> dict[str, str]:
    """Job args for registry credentials; the password is asked for when not given."""
    if not username:
        if password:
            raise InvalidInput("--password needs --username")
        return {}
    if not password:
        if not sys.stdin.isatty() or os.environ.get("CI"):
            raise InvalidInput(
                f"no password for {username}: pass --password or set DAMSELFLY_REGISTRY_PASSWORD"
            )
        password = typer.prompt(f"password for {username}", hide_input=True)
    return {"username": username, "password": password}


def run_job(
    client: ManagerClient, type_: str, args: dict[str, Any], console: Console, timeout: float = 600
) -> dict[str, Any]:
    """Create a job and wait for it, showing its state and progress."""
    job = client.call("POST", "/api/v1/jobs", {"type": type_, "args": args})

    def shown(j: dict[str, Any]) -> str:
        progress = j.get("progress")
        percent = f" {progress}%" if progress and j["state"] == "PENDING" else ""
        return f"job {j['id']} ({type_}) {j['state'].lower()}{percent}…"

    with console.status(shown(job)) as status:
        job = client.wait_job(job, lambda j: status.update(shown(j)), timeout=timeout)
    return job
