"""`damselfly serve`: the embedded deployment, everything in one process.

The manager (API over SQLite, job workers), one scheduler in cluster "default"
(registered with the manager directly), one seed peer whose local socket is
`<data-dir>/peer.sock`, so `damselfly get` on this machine goes through it, and media
workers that fetch URL inputs through that same peer.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from damselfly.database import utcnow
from damselfly.manager.models import Scheduler, SchedulerCluster
from damselfly.manager.service import Manager, prepare, start_server
from damselfly.peer.daemon import Daemon
from damselfly.scheduler.server import start_scheduler
from damselfly.settings import ManagerSettings, MediaSettings, PeerSettings, SchedulerSettings

DEFAULT_CLUSTER = "default"


def register_local_scheduler(manager: Manager, hostname: str, ip: str, port: int) -> int:
    """Cluster "default" with this process's scheduler in it; the cluster's ID."""
    with manager.context.sessions.begin() as session:
        cluster = session.scalar(
            select(SchedulerCluster).where(SchedulerCluster.name == DEFAULT_CLUSTER)
        )
        stamp = utcnow()
        if cluster is None:
            cluster = SchedulerCluster(
                name=DEFAULT_CLUSTER, bio="embedded", created_at=stamp, updated_at=stamp
            )
            session.add(cluster)
            session.flush()
        for old in session.scalars(select(Scheduler).where(Scheduler.cluster_id == cluster.id)):
            old.state = "inactive"  # an earlier run's port; this run's scheduler replaces it
        session.add(
            Scheduler(
                cluster_id=cluster.id,
                hostname=hostname,
                ip=ip,
                port=port,
                state="active",
                created_at=stamp,
                last_seen=stamp,
            )
        )
        return cluster.id


async def run(
    manager_settings: ManagerSettings,
    scheduler_settings: SchedulerSettings,
    peer_settings: PeerSettings,
    media_settings: MediaSettings,
) -> None:
    manager = prepare(manager_settings, media_settings)
    scheduler = None
    daemon = None
    try:
        scheduler = await start_scheduler(scheduler_settings)
        local_ip = "127.0.0.1" if scheduler_settings.listen == "127.0.0.1" else peer_settings.ip
        register_local_scheduler(manager, peer_settings.hostname, local_ip, scheduler.port)
        daemon = Daemon(replace(peer_settings, scheduler=f"http://{local_ip}:{scheduler.port}"))
        await daemon.start()
        _, server, port = await start_server(manager_settings, manager)
        host = manager_settings.listen
        print(f"damselfly is up. API: http://{host}:{port}/api/v1 (OpenAPI /openapi.json)")
        print(f"  scheduler http://{local_ip}:{scheduler.port} in cluster {DEFAULT_CLUSTER!r}")
        print(f"  seed peer {daemon.host_id}: `damselfly get URL -O FILE` uses it")
        for line in manager.banner:
            print(line)
        print("Ctrl-C stops everything.", flush=True)
        await server
    finally:
        if daemon is not None:
            await daemon.stop()
        if scheduler is not None:
            await scheduler.stop()
        manager.close()
