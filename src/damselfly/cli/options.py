"""Options and parsing shared by several commands."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from damselfly.config import ConfigFile
from damselfly.errors import InvalidInput
from damselfly.ids import DEFAULT_FILTERED_QUERY_PARAMS
from damselfly.settings import MediaSettings


def default_data_dir() -> Path:
    env = os.environ.get("DAMSELFLY_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "damselfly"


def outbound_allow_option() -> typer.models.OptionInfo:
    return typer.Option(
        None,
        "--outbound-allow",
        help="Only these networks (CIDR) may be fetched from; repeatable (default: any).",
    )


def outbound_deny_option() -> typer.models.OptionInfo:
    return typer.Option(
        None, "--outbound-deny", help="Never fetch from these networks (CIDR); repeatable."
    )


def config_option() -> typer.models.OptionInfo:
    return typer.Option(
        None,
        "--config",
        envvar="DAMSELFLY_CONFIG",
        help="TOML configuration file; flags given here win (docs/configuration.md).",
    )


def with_media_config(
    ctx: typer.Context, media: MediaSettings, cfg: ConfigFile, workers_flag: str = "media_workers"
) -> MediaSettings:
    """`media` with the config file's [media] table, its roots created."""
    flags = {**MEDIA_FLAGS, "workers": workers_flag}
    media = cfg.apply(ctx, media, "media", flags)
    for root in (*media.input_roots, *media.output_roots):
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"media root {root} is not a directory")
        root.mkdir(parents=True, exist_ok=True)
    return media


# [media] settings -> the flags that set them on manager, worker and serve
MEDIA_FLAGS = {
    "input_roots": "media_input_root",
    "output_roots": "media_output_root",
}


def filters_or_default(given: list[str] | None) -> tuple[str, ...]:
    """A user list replaces the default list (as upstream); none given means the default."""
    return tuple(given) if given else DEFAULT_FILTERED_QUERY_PARAMS


def parse_headers(values: list[str] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values or []:
        name, sep, content = value.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
            raise InvalidInput(f"invalid header {value!r}: use -H 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def media_settings(
    data_dir: Path,
    input_roots: list[Path] | None,
    output_roots: list[Path] | None,
    workers: int | None,
    *,
    peer_endpoint: Path | None,
    job_lease: float = 30.0,
    outbound_allow: tuple[str, ...] = (),
    outbound_deny: tuple[str, ...] = (),
) -> MediaSettings:
    """Media settings from CLI options; roots default to <data-dir>/media/{input,output}."""
    for root in (*(input_roots or []), *(output_roots or [])):
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"media root {root} is not a directory")
    inputs = tuple(p.resolve() for p in input_roots or [data_dir / "media" / "input"])
    outputs = tuple(p.resolve() for p in output_roots or [data_dir / "media" / "output"])
    for root in (*inputs, *outputs):
        root.mkdir(parents=True, exist_ok=True)
    extra = {} if workers is None else {"workers": workers}
    return MediaSettings(
        data_dir=data_dir,
        input_roots=inputs,
        output_roots=outputs,
        peer_endpoint=peer_endpoint,
        job_lease=job_lease,
        outbound_allow=outbound_allow,
        outbound_deny=outbound_deny,
        **extra,
    )
