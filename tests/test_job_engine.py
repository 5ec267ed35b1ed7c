"""The job engine in process, on a real SQLite database and Huey SQLite queue:
priorities, timeouts, claim-once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.jobs.engine import FAILURE, SUCCESS, JobEngine, JobType
from damselfly.jobs.models import Job
from damselfly.jobs.queue import make_queue, start_consumer
from damselfly.logs import EventLog
from damselfly.manager.db import make_engine, migrate, sessions, sqlite_url


@pytest.fixture
def make(tmp_path: Path) -> Iterator:
    made = []

    def build(types: dict[str, JobType], workers: int = 1) -> JobEngine:
        db = make_engine(sqlite_url(tmp_path))
        migrate(db)
        queue = make_queue("test", redis_url=None, data_dir=tmp_path)
        engine = JobEngine(sessions(db), queue, types, EventLog(tmp_path / "logs", "jobs"))
        made.append(start_consumer(queue, workers))
        return engine

    yield build
    for consumer in made:
        consumer.stop(graceful=True)


def wait(engine: JobEngine, job_id: int, timeout: float = 10) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.sessions() as session:
            job = session.get(Job, job_id)
            if job is not None and job.finished_at is not None:
                return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def test_higher_priority_jobs_run_first(make) -> None:
    order: list[str] = []
    gate = threading.Event()

    def blocker(args, clusters, progress):
        gate.wait(10)
        return {}

    def record(args, clusters, progress):
        order.append(args["name"])
        return {}

    engine = make(
        {
            "block": JobType(blocker),
            "low": JobType(record, priority=0),
            "high": JobType(record, priority=10),
        }
    )
    first = engine.submit("block", {}, user_id=None, cluster_ids=[])
    time.sleep(0.3)  # the single worker is busy with it
    low = [
        engine.submit("low", {"name": f"low{n}"}, user_id=None, cluster_ids=[]) for n in range(3)
    ]
    high = engine.submit("high", {"name": "high"}, user_id=None, cluster_ids=[])
    gate.set()
    for job in [first, *low, high]:
        assert wait(engine, job.id).state == SUCCESS
    assert order[0] == "high" and sorted(order[1:]) == ["low0", "low1", "low2"]


def test_a_job_past_its_timeout_fails_with_a_reason(make) -> None:
    def slow(args, clusters, progress):
        time.sleep(2)
        return {}

    engine = make({"slow": JobType(slow, timeout=0.3)})
    started = time.monotonic()
    job = wait(engine, engine.submit("slow", {}, user_id=None, cluster_ids=[]).id)
    assert time.monotonic() - started < 1.5
    assert job.state == FAILURE and "did not finish within 0.3s" in job.error_log


def test_a_job_delivered_twice_runs_once(make) -> None:
    runs: list[int] = []

    def count(args, clusters, progress):
        runs.append(1)
        return {}

    engine = make({"count": JobType(count)}, workers=2)
    job = engine.submit("count", {}, user_id=None, cluster_ids=[])
    engine._enqueue(job)  # a duplicate delivery, as after a re-queue
    assert wait(engine, job.id).state == SUCCESS
    time.sleep(0.5)
    assert runs == [1]
