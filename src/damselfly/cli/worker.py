"""`damselfly worker`: media workers, and optionally task-cache job workers, without
the API, beside a manager.

They share the manager's database and queues: on one host its data directory (SQLite),
elsewhere `--database-url` and `--redis-url`. Start the manager with `--media-workers 0`
(and `--job-workers 0`) to leave that work to these processes. Leases decide who runs
what: a worker that dies has its work taken back by the others (see jobs/engine.py).
"""

from __future__ import annotations

import signal
import threading
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
from damselfly.units import parse_duration

HELP = """Run media workers (and, with --job-workers, task-cache jobs) against a manager's
database and queues; no API.

\b
  damselfly worker --data-dir /srv/damselfly                 # beside `damselfly manager` here
  damselfly worker --database-url postgresql+psycopg://… --redis-url redis://… --workers 4 \\
      --job-workers 2 --secret-key-file /etc/damselfly/secret.key
"""


def worker(
    ctx: typer.Context,
    data_dir: Path = typer.Option(
        None, "--data-dir", help="The manager's data directory, or this worker's own."
    ),
    database_url: str | None = typer.Option(None, "--database-url", help="The manager's database."),
    redis_url: str | None = typer.Option(None, "--redis-url", help="The manager's Redis queue."),
    workers: int | None = typer.Option(
        None, "--workers", help="Media tasks at once (default: half the cores; 0: none)."
    ),
    job_workers: int = typer.Option(
        0, "--job-workers", help="Task-cache jobs (delete, preheat, search) at once (0: none)."
    ),
    secret_key_file: Path | None = typer.Option(
        None, "--secret-key-file", help="A copy of the manager's secret.key (for --job-workers)."
    ),
    media_input_root: list[Path] | None = typer.Option(
        None, "--media-input-root", help="Where input paths may be; repeatable."
    ),
    media_output_root: list[Path] | None = typer.Option(
        None, "--media-output-root", help="Where outputs go; repeatable."
    ),
    peer_endpoint: Path | None = typer.Option(
        None, "--peer-endpoint", help="Peer daemon socket that fetches URL inputs (P2P cache)."
    ),
    job_lease: str = typer.Option(
        "30s",
        "--job-lease",
        help="How long a worker may go silent before others take its work back.",
    ),
    outbound_allow: list[str] | None = outbound_allow_option(),
    outbound_deny: list[str] | None = outbound_deny_option(),
    config: Path | None = config_option(),
) -> None:
    cfg = config_file.load(config)
    shared = cfg.values("manager")  # the manager's database, queue and key
    data_dir = data_dir or cfg.get("media", "data_dir") or shared.get("data_dir")
    data_dir = data_dir or default_data_dir()
    database_url = database_url or shared.get("database_url")
    redis_url = redis_url or shared.get("redis_url")
    secret_key_file = secret_key_file or shared.get("secret_key_file")
    if (workers is not None and workers < 0) or not 0 <= job_workers <= 64:
        raise DamselflyError("--workers and --job-workers must be within 0-64")
    lease = parse_duration(job_lease)
    media = media_settings(
        data_dir,
        media_input_root,
        media_output_root,
        workers,
        peer_endpoint=peer_endpoint,
        job_lease=lease,
        outbound_allow=tuple(outbound_allow or ()),
        outbound_deny=tuple(outbound_deny or ()),
    )
    media = with_media_config(ctx, media, cfg, workers_flag="workers")
    if media.workers == 0 and job_workers == 0:
        raise DamselflyError("--workers 0 and --job-workers 0 leave this worker nothing to do")
    from damselfly.logs import EventLog
    from damselfly.manager.db import make_engine, migrate, sessions, sqlite_url
    from damselfly.manager.job_workers import start_task_jobs
    from damselfly.manager.secrets import SecretBox, default_key_file
    from damselfly.media.workers import start_media
    from damselfly.netpolicy import policy_of

    box = None
    if job_workers:
        box = SecretBox(secret_key_file or default_key_file(data_dir), create=False)
    try:
        engine = make_engine(database_url or sqlite_url(data_dir))
        migrate(engine)
    except Exception as exc:
        raise DamselflyError(f"cannot open the manager database: {exc}") from None
    log = EventLog(data_dir / "logs", "worker")
    factory = sessions(engine)
    running = []
    lines = []
    if media.workers:
        started = start_media(
            factory, media, redis_url=redis_url, queue_dir=data_dir, log=log, watch=False
        )
        running.append(started)
        failed = started.recovered[0]
        lines.append(
            f"{media.workers} media worker(s)"
            + (f"; {failed} interrupted task(s) queued again" if failed else "")
        )
    if box is not None:
        jobs = start_task_jobs(
            factory, data_dir=data_dir, redis_url=redis_url, box=box, workers=job_workers,
            lease=media.job_lease, log=log, role="worker", policy=policy_of(media),
        )  # fmt: skip
        running.append(jobs)
        lines.append(f"{job_workers} job worker(s)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("worker ready: " + ", ".join(lines), flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for part in running:
            part.close()
        log.close()
