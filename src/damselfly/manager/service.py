"""Starting the manager: database, migrations, the first root user, the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from damselfly.logs import EventLog
from damselfly.manager.api.app import build_app
from damselfly.manager.api.deps import ManagerContext
from damselfly.manager.auth import bootstrap_root
from damselfly.manager.change_feed import ChangeFeed
from damselfly.manager.db import make_engine, migrate, sessions, sqlite_url
from damselfly.manager.job_workers import TaskJobWorkers, start_task_jobs
from damselfly.manager.secrets import SecretBox, default_key_file
from damselfly.media.workers import MediaWorkers, start_media
from damselfly.netpolicy import policy_of
from damselfly.settings import ManagerSettings, MediaSettings


@dataclass
class Manager:
    context: ManagerContext
    jobs: TaskJobWorkers
    log: EventLog
    banner: list[str]
    media: MediaWorkers | None = None
    feed: ChangeFeed | None = None

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        if self.media is not None:
            self.media.close()
        self.jobs.close()
        self.log.close()


def prepare(settings: ManagerSettings, media: MediaSettings | None = None) -> Manager:
    """Migrate the database, make root on first start, start the job workers and
    recover what a crash left; the lines to tell the user."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir))
    migrate(engine)
    factory = sessions(engine)
    with factory.begin() as session:
        boot = bootstrap_root(session, settings.data_dir)
    log = EventLog(settings.data_dir / "logs", "manager")
    jobs = start_task_jobs(
        factory,
        data_dir=settings.data_dir,
        redis_url=settings.redis_url,
        box=SecretBox(settings.secret_key_file or default_key_file(settings.data_dir)),
        workers=settings.job_workers,
        lease=settings.job_lease,
        policy=policy_of(settings),
        log=log,
        registry_ca_cert=settings.registry_ca_cert,
    )
    failed, requeued = jobs.recovered
    lines = []
    if boot.created:
        lines += [
            "created user root with password " + (boot.password or ""),
            "  (shown once; change it with PUT /api/v1/users/me/password)",
        ]
    if failed or requeued:
        lines.append(
            f"jobs recovered: {failed} cut short by a stop (run again while attempts remain), "
            f"{requeued} queued again"
        )
    lines.append(f"root's API token: {boot.token_file} (readable only by you)")
    workers = None
    if media is not None:
        workers = start_media(
            factory, media, redis_url=settings.redis_url, queue_dir=settings.data_dir, log=log
        )
        failed, requeued = workers.recovered
        if failed:
            lines.append(f"media tasks recovered: {failed} cut short by a stop, queued again")
        lines.append(
            f"media: {media.workers} worker(s); inputs under "
            f"{', '.join(map(str, media.input_roots)) or '(uploads and URLs only)'}; outputs "
            f"under {', '.join(map(str, media.output_roots))}"
        )
    context = ManagerContext(
        factory,
        settings.data_dir,
        jobs.engine,
        jobs.task_jobs.validate,
        jobs.box.seal,
        jobs.box.open,
        workers.service if workers else None,
        workers.workflows if workers else None,
    )
    feed = ChangeFeed(factory, jobs.engine, workers.service if workers else None, log)
    feed.start()
    return Manager(context, jobs, log, lines, workers, feed)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would kill the process
    before the peer and scheduler it runs beside are stopped; we handle signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def ask_to_exit(self) -> None:
        self.should_exit = True


async def start_server(
    settings: ManagerSettings, manager: Manager
) -> tuple[uvicorn.Server, asyncio.Task, int]:
    """The API server, listening; (server, its task, port). On SIGINT or SIGTERM the
    task ends, and the caller stops the rest."""
    config = uvicorn.Config(
        build_app(manager.context),
        host=settings.listen,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.ask_to_exit)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises why it could not start
            raise SystemExit(1)
        await asyncio.sleep(0.02)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


async def serve(settings: ManagerSettings, manager: Manager) -> None:
    _, task, port = await start_server(settings, manager)
    print(f"manager ready: http://{settings.listen}:{port} (API /api/v1, /openapi.json)")
    for line in manager.banner:
        print(line)
    print("", end="", flush=True)
    await task


def token_file(data_dir: Path) -> Path:
    return data_dir / "manager" / "root-token"
