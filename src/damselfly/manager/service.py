"""Starting the manager: database, migrations, the first root user, the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import urllib3
import uvicorn

from damselfly.jobs.engine import JobEngine
from damselfly.jobs.node import Node, claim_node
from damselfly.jobs.queue import EmbeddedConsumer, make_queue, start_consumer
from damselfly.logs import EventLog
from damselfly.manager.api.app import build_app
from damselfly.manager.api.deps import ManagerContext
from damselfly.manager.auth import bootstrap_root
from damselfly.manager.db import make_engine, migrate, sessions, sqlite_url
from damselfly.manager.image_jobs import ImageJobs
from damselfly.manager.schedulers import ClusterSchedulers
from damselfly.manager.secrets import SecretBox
from damselfly.manager.task_jobs import TaskJobs
from damselfly.media.workers import MediaWorkers, start_media
from damselfly.settings import ManagerSettings, MediaSettings
from damselfly.source.http import HTTPSource
from damselfly.source.retry import RetryPolicy


@dataclass
class Manager:
    context: ManagerContext
    consumer: EmbeddedConsumer
    log: EventLog
    banner: list[str]
    node: Node
    media: MediaWorkers | None = None

    def close(self) -> None:
        if self.media is not None:
            self.media.close()
        self.consumer.stop(graceful=True)
        self.context.jobs.close()
        self.node.release()
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
    queue = make_queue("damselfly-jobs", redis_url=settings.redis_url, data_dir=settings.data_dir)
    box = SecretBox(settings.data_dir / "manager" / "secret.key")
    schedulers = ClusterSchedulers(factory, urllib3.PoolManager(maxsize=16))
    images = ImageJobs(schedulers, box, lambda: registry_source(settings))
    task_jobs = TaskJobs(schedulers, box, images)
    node = claim_node(settings.data_dir, "manager")
    jobs = JobEngine(
        factory, queue, task_jobs.types(), log, node=node.name, lease=settings.job_lease
    )
    failed, requeued = jobs.recover()
    jobs.start_keeper()
    consumer = start_consumer(queue, settings.job_workers)
    lines = []
    if boot.created:
        lines += [
            "created user root with password " + (boot.password or ""),
            "  (shown once; change it with PUT /api/v1/users/me/password)",
        ]
    if failed or requeued:
        lines.append(f"jobs recovered: {failed} interrupted and failed, {requeued} re-queued")
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
        jobs,
        task_jobs.validate,
        box.seal,
        box.open,
        workers.service if workers else None,
        workers.workflows if workers else None,
    )
    return Manager(context, consumer, log, lines, node, workers)


def registry_source(settings: ManagerSettings) -> HTTPSource:
    """The HTTP client a job resolves image manifests with (one per job: its tokens
    are that job's credentials' only)."""
    return HTTPSource(
        retry=RetryPolicy(attempts=3, first_backoff=0.2),
        connections=2,
        connect_timeout=5.0,
        read_timeout=30.0,
        ca_cert=str(settings.registry_ca_cert) if settings.registry_ca_cert else None,
    )


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
