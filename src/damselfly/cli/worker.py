"""`damselfly worker`: media workers without the API, beside a manager.

They share the manager's database and queue: on one host its data directory (SQLite),
elsewhere `--database-url` and `--redis-url`. Start the manager with
`--media-workers 0` to leave all media work to these processes.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from damselfly.cli.options import default_data_dir, media_settings
from damselfly.errors import DamselflyError
from damselfly.units import parse_duration

HELP = """Run media workers (no API) against a manager's database and queue.

\b
  damselfly worker --data-dir /srv/damselfly                 # beside `damselfly manager` here
  damselfly worker --database-url postgresql+psycopg://… --redis-url redis://… --workers 4
"""


def worker(
    data_dir: Path = typer.Option(None, "--data-dir", help="The manager's data directory."),
    database_url: str | None = typer.Option(None, "--database-url", help="The manager's database."),
    redis_url: str | None = typer.Option(None, "--redis-url", help="The manager's Redis queue."),
    workers: int | None = typer.Option(
        None, "--workers", help="Tasks at once (default: half the cores)."
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
        help="How long a worker may go silent before others take its tasks back.",
    ),
) -> None:
    data_dir = data_dir or default_data_dir()
    if workers is not None and workers < 1:
        raise DamselflyError("--workers must be at least 1 (a worker process with none idles)")
    media = media_settings(
        data_dir,
        media_input_root,
        media_output_root,
        workers,
        peer_endpoint=peer_endpoint,
        job_lease=parse_duration(job_lease),
    )
    from damselfly.logs import EventLog
    from damselfly.manager.db import make_engine, migrate, sessions, sqlite_url
    from damselfly.media.workers import start_media

    try:
        engine = make_engine(database_url or sqlite_url(data_dir))
        migrate(engine)
    except Exception as exc:
        raise DamselflyError(f"cannot open the manager database: {exc}") from None
    log = EventLog(data_dir / "logs", "media-worker")
    running = start_media(
        sessions(engine), media, redis_url=redis_url, queue_dir=data_dir, log=log, watch=False
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    failed, _ = running.recovered
    print(
        f"media worker ready: {media.workers} worker(s)"
        + (f"; {failed} interrupted task(s) queued again" if failed else ""),
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        running.close()
        log.close()
