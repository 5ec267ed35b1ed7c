"""`damselfly preheat`: put a file or every layer of an image on seed peers ahead of use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from damselfly.cli.image_results import print_preheat
from damselfly.cli.job_options import (
    DataDirOpt,
    ImageOpt,
    ManagerOpt,
    PasswordOpt,
    PlatformOpt,
    TokenOpt,
    UsernameOpt,
    credentials,
    manager_client,
    run_job,
)
from damselfly.cli.options import parse_headers
from damselfly.errors import InvalidInput
from damselfly.units import parse_duration, parse_size

HELP = """Fetch a file, or every layer of an image, onto peers before anyone asks.

\b
  damselfly preheat --url https://example.com/model.bin
  damselfly preheat --image-manifest-url https://registry.example.com/v2/library/alpine/manifests/3.19 --platform linux/arm64 --scope all_peers
"""  # noqa: E501

_SCOPES = ("single_seed_peer", "all_seed_peers", "all_peers")


def preheat(
    url: str | None = typer.Option(None, "--url", help="A file's URL."),
    image_manifest_url: str | None = ImageOpt,
    scope: str = typer.Option(
        "single_seed_peer", "--scope", help="single_seed_peer, all_seed_peers or all_peers."
    ),
    platform: str | None = PlatformOpt,
    username: str | None = UsernameOpt,
    password: str | None = PasswordOpt,
    header: list[str] | None = typer.Option(
        None, "-H", "--header", help="Origin request header 'Name: value'; repeatable."
    ),
    tag: str = typer.Option("", "--tag"),
    application: str = typer.Option("", "--application"),
    piece_length: str | None = typer.Option(None, "--piece-length", help="e.g. 8MiB."),
    timeout: str = typer.Option("10m", "--timeout", help="How long each peer may take."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    if bool(url) == bool(image_manifest_url):
        raise InvalidInput("give exactly one of --url or --image-manifest-url")
    if scope not in _SCOPES:
        raise InvalidInput(f"--scope must be one of {', '.join(_SCOPES)}")
    if platform and not image_manifest_url:
        raise InvalidInput("--platform is for --image-manifest-url")
    seconds = parse_duration(timeout)
    args: dict[str, Any] = {
        "type": "image" if image_manifest_url else "file",
        "url": image_manifest_url or url,
        "scope": scope,
        "timeout": seconds,
        **credentials(username, password),
    }
    if header:
        args["headers"] = parse_headers(header)
    if platform:
        args["platform"] = platform
    if tag:
        args["tag"] = tag
    if application:
        args["application"] = application
    if piece_length:
        args["piece_length"] = parse_size(piece_length)
    console = Console()
    job = run_job(manager_client(manager, token, data_dir), "preheat", args, console, seconds + 120)
    print_preheat(job, console)
