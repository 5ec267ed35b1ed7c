"""`damselfly manager`: run the manager (REST API over SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from damselfly import config as config_file
from damselfly.cli.options import (
    config_option,
    default_data_dir,
    media_settings,
    outbound_allow_option,
    outbound_deny_option,
    with_media_config,
)
from damselfly.errors import DamselflyError
from damselfly.settings import ManagerSettings
from damselfly.units import parse_duration

HELP = """Run the manager: the REST API (/api/v1, /openapi.json) and its database.

On first start it creates the user root, prints its password once, and writes an API token to <data-dir>/manager/root-token.

Example:

  damselfly manager --port 8080 --database-url postgresql+psycopg://damselfly:pw@db/damselfly
"""  # noqa: E501


def manager(
    ctx: typer.Context,
    listen: str = typer.Option("0.0.0.0", "--listen", help="Address the API binds."),
    port: int = typer.Option(8080, "--port", help="API port (0: any free port)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Database and token live here."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="SQLAlchemy URL; default SQLite in the data dir."
    ),
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="Job queue on Redis (redis://host:6379/0); default SQLite."
    ),
    job_workers: int = typer.Option(
        4, "--job-workers", help="Jobs run at once in here (0: only on `damselfly worker`s)."
    ),
    secret_key_file: Path | None = typer.Option(
        None,
        "--secret-key-file",
        help="Key sealing job credentials (default "
        "<data-dir>/manager/secret.key; give workers a copy).",
    ),
    registry_ca_cert: Path | None = typer.Option(
        None, "--registry-ca-cert", help="CA bundle for HTTPS registries (image jobs)."
    ),
    media_input_root: list[Path] | None = typer.Option(
        None, "--media-input-root", help="Media tasks may read input paths here; repeatable."
    ),
    media_output_root: list[Path] | None = typer.Option(
        None, "--media-output-root", help="Media outputs go under here; repeatable."
    ),
    media_workers: int | None = typer.Option(
        None, "--media-workers", help="Media tasks run at once here (0: none; `damselfly worker`)."
    ),
    peer_endpoint: Path | None = typer.Option(
        None, "--peer-endpoint", help="Peer daemon socket that fetches URL inputs (P2P cache)."
    ),
    job_lease: str = typer.Option(
        "30s",
        "--job-lease",
        help="How long a job's process may go silent before others take its jobs back.",
    ),
    outbound_allow: list[str] | None = outbound_allow_option(),
    outbound_deny: list[str] | None = outbound_deny_option(),
    config: Path | None = config_option(),
) -> None:
    outbound = {"outbound_allow": tuple(outbound_allow or ()),
                "outbound_deny": tuple(outbound_deny or ())}  # fmt: skip
    cfg = config_file.load(config)
    lease = parse_duration(job_lease)
    settings = ManagerSettings(
        data_dir=data_dir or cfg.get("manager", "data_dir") or default_data_dir(),
        listen=listen,
        port=port,
        database_url=database_url,
        redis_url=redis_url,
        job_workers=job_workers,
        secret_key_file=secret_key_file,
        registry_ca_cert=registry_ca_cert,
        job_lease=lease,
        **outbound,
    )
    settings = cfg.apply(ctx, settings, "manager")
    ca = settings.registry_ca_cert
    if ca is not None and not ca.is_file():
        raise DamselflyError(f"CA bundle {ca} does not exist")
    media = media_settings(
        settings.data_dir,
        media_input_root,
        media_output_root,
        media_workers,
        peer_endpoint=peer_endpoint,
        job_lease=lease,
        **outbound,
    )
    media = with_media_config(ctx, media, cfg)
    from damselfly.manager.service import prepare, serve

    try:
        running = prepare(settings, media)
    except Exception as exc:  # SQLAlchemy and driver errors: say which database failed
        if isinstance(exc, DamselflyError):
            raise
        where = settings.database_url or f"SQLite in {settings.data_dir}"
        raise DamselflyError(f"cannot open the manager database ({where}): {exc}") from None
    try:
        asyncio.run(serve(settings, running))
    except (OSError, SystemExit) as exc:
        raise DamselflyError(
            f"cannot start the manager on {settings.listen}:{settings.port}: {exc}"
        ) from None
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
