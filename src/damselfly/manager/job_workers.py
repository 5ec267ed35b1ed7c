"""The task-cache job engine (delete, preheat, search jobs) and its workers.

The manager runs one; so may `damselfly worker` on other machines, sharing the
database, the Redis queue and the manager's secret key (credentials in job args are
sealed with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import urllib3
from sqlalchemy.orm import Session, sessionmaker

from damselfly.jobs.engine import JobEngine
from damselfly.jobs.node import Node, claim_node
from damselfly.jobs.queue import EmbeddedConsumer, make_queue, start_consumer
from damselfly.logs import EventLog
from damselfly.manager.image_jobs import ImageJobs
from damselfly.manager.schedulers import ClusterSchedulers
from damselfly.manager.secrets import SecretBox
from damselfly.manager.task_jobs import TaskJobs
from damselfly.netpolicy import OutboundPolicy
from damselfly.source.http import HTTPSource
from damselfly.source.retry import RetryPolicy


@dataclass
class TaskJobWorkers:
    engine: JobEngine
    consumer: EmbeddedConsumer | None
    node: Node
    box: SecretBox
    task_jobs: TaskJobs
    recovered: tuple[int, int]

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
        self.engine.close()
        self.node.release()


def start_task_jobs(
    sessions: sessionmaker[Session],
    *,
    data_dir: Path,
    redis_url: str | None,
    box: SecretBox,
    workers: int,
    lease: float,
    log: EventLog,
    registry_ca_cert: Path | None = None,
    role: str = "manager",
    policy: OutboundPolicy | None = None,
) -> TaskJobWorkers:
    """The engine (always: it submits) and `workers` threads running jobs (0: none)."""
    queue = make_queue("damselfly-jobs", redis_url=redis_url, data_dir=data_dir)
    schedulers = ClusterSchedulers(sessions, urllib3.PoolManager(maxsize=16))
    images = ImageJobs(schedulers, box, registry_sources(registry_ca_cert, policy))
    task_jobs = TaskJobs(schedulers, box, images)
    node = claim_node(data_dir, f"{role}-jobs")
    engine = JobEngine(sessions, queue, task_jobs.types(), log, node=node.name, lease=lease)
    recovered = engine.recover() if workers else (0, 0)
    engine.start_keeper()
    consumer = start_consumer(queue, workers, log) if workers else None
    return TaskJobWorkers(engine, consumer, node, box, task_jobs, recovered)


def registry_sources(
    ca_cert: Path | None, policy: OutboundPolicy | None = None
) -> Callable[[], HTTPSource]:
    """Makes the HTTP client a job resolves image manifests with (one per job: its
    tokens are that job's credentials' only)."""

    def make() -> HTTPSource:
        return HTTPSource(
            retry=RetryPolicy(attempts=3, first_backoff=0.2),
            connections=2,
            connect_timeout=5.0,
            read_timeout=30.0,
            ca_cert=str(ca_cert) if ca_cert else None,
            policy=policy,
        )

    return make
