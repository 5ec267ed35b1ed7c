"""`damselfly serve`: manager, scheduler and a seed peer in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from damselfly import config as config_file
from damselfly.cli.options import (
    config_option,
    default_data_dir,
    media_settings,
    with_media_config,
)
from damselfly.errors import DamselflyError
from damselfly.settings import (
    ManagerSettings,
    PeerSettings,
    SchedulerSettings,
    default_endpoint,
)

HELP = """Run everything on this machine: the manager (API), a scheduler, a seed peer and media workers, over SQLite in one data directory.

Prints where the API is and how to log in. Other hosts join with `damselfly peer --scheduler URL`.
"""  # noqa: E501


def serve(
    ctx: typer.Context,
    data_dir: Path = typer.Option(None, "--data-dir", help="Everything lives here."),
    listen: str = typer.Option("127.0.0.1", "--listen", help="Address the servers bind."),
    port: int = typer.Option(8080, "--port", help="API port (0: any free port)."),
    scheduler_port: int = typer.Option(
        8002, "--scheduler-port", help="Scheduler port (0: any free port)."
    ),
    peer_port: int = typer.Option(0, "--peer-port", help="Seed peer upload port (0: any)."),
    media_input_root: list[Path] | None = typer.Option(
        None,
        "--media-input-root",
        help="Media tasks may read input paths here; repeatable (default <data-dir>/media/input).",
    ),
    media_output_root: list[Path] | None = typer.Option(
        None,
        "--media-output-root",
        help="Media outputs go under here; repeatable (default <data-dir>/media/output).",
    ),
    media_workers: int | None = typer.Option(
        None, "--media-workers", help="Media tasks run at once (default: half the cores)."
    ),
    config: Path | None = config_option(),
) -> None:
    cfg = config_file.load(config)
    data_dir = data_dir or cfg.get("manager", "data_dir") or default_data_dir()
    overrides = {"ip": "127.0.0.1"} if listen == "127.0.0.1" else {}
    peer = PeerSettings(
        data_dir=data_dir, seed=True, listen=listen, upload_port=peer_port, **overrides
    )
    scheduler = SchedulerSettings(data_dir=data_dir, listen=listen, port=scheduler_port)
    manager = ManagerSettings(data_dir=data_dir, listen=listen, port=port)
    peer = cfg.apply(ctx, peer, "peer", {"upload_port": "peer_port"})
    scheduler = cfg.apply(ctx, scheduler, "scheduler", {"port": "scheduler_port"})
    manager = cfg.apply(ctx, manager, "manager")
    media = media_settings(
        data_dir,
        media_input_root,
        media_output_root,
        media_workers,
        peer_endpoint=default_endpoint(data_dir),
    )
    media = with_media_config(ctx, media, cfg)
    from damselfly.serve import run

    try:
        asyncio.run(run(manager, scheduler, peer, media))
    except OSError as exc:
        raise DamselflyError(
            f"cannot start: {exc}; another damselfly may be running, or choose other "
            "--port / --scheduler-port / --peer-port"
        ) from None
    except KeyboardInterrupt:
        pass
