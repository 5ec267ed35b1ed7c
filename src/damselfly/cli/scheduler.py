"""`damselfly scheduler`: run a scheduler."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer

from damselfly import config as config_file
from damselfly.cli.options import config_option, default_data_dir
from damselfly.errors import DamselflyError
from damselfly.settings import SchedulerSettings

HELP = """Run a scheduler: peers register with it, and it chooses their parents.

Example:

  damselfly scheduler --port 8002
"""


def scheduler(
    ctx: typer.Context,
    listen: str = typer.Option("0.0.0.0", "--listen", help="Address the API binds."),
    port: int = typer.Option(8002, "--port", help="API port (0: any free port)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Logs live here."),
    host_ttl: float = typer.Option(
        30.0, "--host-ttl", help="Seconds without a heartbeat before a host is dropped."
    ),
    max_parents: int = typer.Option(4, "--max-parents", help="Parents handed out at a time."),
    manager: str | None = typer.Option(None, "--manager", help="Manager URL to register with."),
    cluster_id: int = typer.Option(1, "--cluster-id", help="Scheduler cluster to join."),
    manager_token: str | None = typer.Option(
        None, "--manager-token", envvar="DAMSELFLY_TOKEN", help="Root API token for the manager."
    ),
    advertise_ip: str | None = typer.Option(
        None, "--advertise-ip", help="IP the manager hands out for this scheduler."
    ),
    config: Path | None = config_option(),
) -> None:
    cfg = config_file.load(config)
    extra = {"advertise_ip": advertise_ip} if advertise_ip else {}
    settings = SchedulerSettings(
        data_dir=data_dir or cfg.get("scheduler", "data_dir") or default_data_dir(),
        listen=listen,
        port=port,
        host_ttl=host_ttl,
        max_parents=max_parents,
        manager=manager,
        cluster_id=cluster_id,
        manager_token=manager_token,
        **extra,
    )
    settings = cfg.apply(ctx, settings, "scheduler")
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        raise DamselflyError(
            f"cannot start the scheduler on {settings.listen}:{settings.port}: {exc}"
        ) from None


async def serve(settings: SchedulerSettings) -> None:
    from damselfly.scheduler.server import start_scheduler

    running = await start_scheduler(settings)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    print(f"scheduler ready: http://{settings.listen}:{running.port}", flush=True)
    try:
        await stopped.wait()
    finally:
        await running.stop()
