"""Delivery: Huey over SQLite (embedded) or Redis (workers on other machines)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from huey import PriorityRedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer

from damselfly.logs import EventLog


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


class HueyLogBridge(logging.Handler):
    """Huey's warnings into our log: one line each without the trace, and the same
    complaint (a queue that is down, polled every 0.1 s) once per 10 s."""

    def __init__(self, log: EventLog, every: float = 10.0) -> None:
        super().__init__(logging.WARNING)
        self.log, self.every = log, every
        self._said: dict[tuple[str, str], float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        error = ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            lines = str(exc).strip().splitlines()
            error = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        key = (record.getMessage(), error)
        stamp = time.monotonic()
        if stamp - self._said.get(key, -self.every) < self.every:
            return
        self._said[key] = stamp
        self.log.warning(f"job queue: {record.getMessage()}", error=error)


def bridge_queue_log(log: EventLog) -> None:
    """Once per process: huey's logger writes through `log` instead of stderr."""
    logger = logging.getLogger("huey")
    if not any(isinstance(h, HueyLogBridge) for h in logger.handlers):
        logger.addHandler(HueyLogBridge(log))
        logger.propagate = False


def start_consumer(queue: Huey, workers: int, log: EventLog | None = None) -> EmbeddedConsumer:
    if log is not None:
        bridge_queue_log(log)
    # poll a SQLite queue every 0.1 s at most: a job should start within a second
    consumer = EmbeddedConsumer(
        queue, workers=workers, worker_type="thread", initial_delay=0.05, max_delay=0.1,
        backoff=1.0, periodic=False,
    )  # fmt: skip
    consumer.start()
    return consumer
