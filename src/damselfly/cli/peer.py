"""`damselfly peer`: run the peer daemon on this host."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from damselfly import config as config_file
from damselfly.cli.options import (
    config_option,
    default_data_dir,
    outbound_allow_option,
    outbound_deny_option,
)
from damselfly.errors import DamselflyError
from damselfly.settings import PeerSettings
from damselfly.units import parse_duration, parse_size

if TYPE_CHECKING:
    from damselfly.peer.daemon import Daemon

HELP = """Run the peer daemon: downloads for local `damselfly get`s (P2P through the scheduler), serves pieces to other peers.

Examples:

  damselfly peer --scheduler http://10.0.0.5:8002

  damselfly peer --seed --scheduler http://10.0.0.5:8002 --port 65002
"""  # noqa: E501


def peer(
    ctx: typer.Context,
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Scheduler URL; without one the peer only uses the origin."
    ),
    seed: bool = typer.Option(False, "--seed", help="Run as a seed peer (host type super)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Store, logs and socket live here."),
    hostname: str | None = typer.Option(None, "--hostname", help="Host name in IDs."),
    ip: str | None = typer.Option(None, "--ip", help="IP address announced to others."),
    listen: str = typer.Option("0.0.0.0", "--listen", help="Address the upload server binds."),
    port: int = typer.Option(0, "--port", help="Upload server port (0: any free port)."),
    advertise_port: int = typer.Option(
        0, "--advertise-port", help="Port announced to others, if a proxy or NAT sits in front."
    ),
    endpoint: Path | None = typer.Option(
        None, "--endpoint", help="Local API socket (default <data-dir>/peer.sock)."
    ),
    upload_slots: int = typer.Option(32, "--upload-slots", help="Pieces uploaded at once."),
    upload_rate: str = typer.Option(
        "0", "--upload-rate", help="Upload cap per second, e.g. 100MiB (0: none)."
    ),
    concurrency: int = typer.Option(
        8, "--concurrency", help="Most pieces fetched at once; starts at 2, doubles while it pays."
    ),
    heartbeat_interval: float = typer.Option(
        5.0, "--heartbeat-interval", help="Seconds between heartbeats."
    ),
    gc_ttl: str = typer.Option(
        "30d", "--gc-ttl", help="Evict tasks not accessed for this long (e.g. 30d, 12h)."
    ),
    gc_interval: str = typer.Option("60s", "--gc-interval", help="How often GC runs."),
    manager: str | None = typer.Option(
        None, "--manager", help="Manager URL: join a scheduler it knows (instead of --scheduler)."
    ),
    manager_token: str | None = typer.Option(
        None, "--manager-token", envvar="DAMSELFLY_TOKEN", help="API token for --manager."
    ),
    cluster_id: int | None = typer.Option(
        None, "--cluster-id", help="With --manager: the scheduler cluster to join."
    ),
    control_from: list[str] | None = typer.Option(
        None,
        "--control-from",
        help="Networks that may make this peer fetch or delete tasks; repeatable "
        "(default: loopback and the scheduler).",
    ),
    outbound_allow: list[str] | None = outbound_allow_option(),
    outbound_deny: list[str] | None = outbound_deny_option(),
    config: Path | None = config_option(),
) -> None:
    cfg = config_file.load(config)
    if manager and scheduler:
        raise DamselflyError("give --scheduler or --manager, not both")
    if manager:
        scheduler = scheduler_from_manager(manager, manager_token, cluster_id)
    overrides: dict[str, object] = {}
    if hostname:
        overrides["hostname"] = hostname
    if ip:
        overrides["ip"] = ip
    settings = PeerSettings(
        data_dir=data_dir or cfg.get("peer", "data_dir") or default_data_dir(),
        seed=seed,
        scheduler=scheduler,
        listen=listen,
        upload_port=port,
        advertise_port=advertise_port,
        endpoint=endpoint,
        upload_slots=upload_slots,
        upload_rate=parse_size(upload_rate),
        concurrency=concurrency,
        heartbeat_interval=heartbeat_interval,
        gc_ttl=parse_duration(gc_ttl),
        gc_interval=parse_duration(gc_interval),
        control_from=tuple(control_from or ()),
        outbound_allow=tuple(outbound_allow or ()),
        outbound_deny=tuple(outbound_deny or ()),
        **overrides,
    )
    settings = cfg.apply(ctx, settings, "peer", {"upload_port": "port"})

    def ready(daemon: Daemon) -> None:
        print(
            f"peer {daemon.host_id} ready: upload {settings.ip}:{daemon.upload_port}, "
            f"local API {settings.socket_path}",
            flush=True,
        )

    try:
        asyncio.run(_serve(settings, ready))
    except OSError as exc:
        raise DamselflyError(
            f"cannot start the peer (upload {settings.listen}:{settings.upload_port}, "
            f"socket {settings.socket_path}): {exc}; choose another --port or --endpoint"
        ) from None


async def _serve(settings: PeerSettings, ready: Callable[[Daemon], None]) -> None:
    from damselfly.peer.daemon import Daemon

    await Daemon(settings).serve_forever(ready)


def scheduler_from_manager(manager: str, token: str | None, cluster_id: int | None) -> str:
    """The URL of an active scheduler the manager knows (in `cluster_id` if given)."""
    from damselfly.cli.api_client import ManagerClient

    if not token:
        raise DamselflyError("--manager needs --manager-token (or DAMSELFLY_TOKEN)")
    schedulers = ManagerClient(manager, token).call("GET", "/api/v1/schedulers")
    active = [
        s
        for s in schedulers
        if s["state"] == "active" and (cluster_id is None or s["cluster_id"] == cluster_id)
    ]
    if not active:
        where = f" in cluster {cluster_id}" if cluster_id is not None else ""
        raise DamselflyError(
            f"the manager at {manager} knows no active scheduler{where}; start one with "
            "`damselfly scheduler --manager ...` or `damselfly serve`"
        )
    chosen = max(active, key=lambda s: s["last_seen"])
    return f"http://{chosen['ip']}:{chosen['port']}"
