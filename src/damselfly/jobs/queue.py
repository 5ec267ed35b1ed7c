"""Delivery: Huey over SQLite (embedded) or Redis (workers on other machines)."""

from __future__ import annotations

from pathlib import Path

from huey import PriorityRedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer


def make_queue(name: str, *, redis_url: str | None, data_dir: Path) -> Huey:
    if redis_url:
        # the priority flavour: job types have priorities (needs Redis >= 5)
        return PriorityRedisHuey(name, url=redis_url, blocking=True, read_timeout=1)
    path = data_dir / "jobs-queue.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(path), timeout=30)


class EmbeddedConsumer(Consumer):
    """A consumer that runs inside another server: the host process owns signals."""

    def _set_signal_handlers(self) -> None:
        pass


def start_consumer(queue: Huey, workers: int) -> EmbeddedConsumer:
    # poll a SQLite queue every 0.1 s at most: a job should start within a second
    consumer = EmbeddedConsumer(
        queue, workers=workers, worker_type="thread", initial_delay=0.05, max_delay=0.1,
        backoff=1.0, periodic=False,
    )  # fmt: skip
    consumer.start()
    return consumer
