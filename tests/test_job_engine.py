"""The job engine on a real SQLite database and Huey SQLite queue: priorities,
timeouts, claim-once, and leases across processes (SIGKILL, renewal, lost queues)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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

    def build(
        types: dict[str, JobType], workers: int = 1, *, lease: float = 30.0, node: str = ""
    ) -> JobEngine:
        db = make_engine(sqlite_url(tmp_path))
        migrate(db)
        queue = make_queue("test", redis_url=None, data_dir=tmp_path)
        engine = JobEngine(
            sessions(db), queue, types, EventLog(tmp_path / "logs", "jobs"),
            node=node or None, lease=lease,
        )  # fmt: skip
        if workers:
            made.append(start_consumer(queue, workers))
        made.append(engine)
        return engine

    yield build
    for thing in made:
        if isinstance(thing, JobEngine):
            thing.close()
        else:
            thing.stop(graceful=True)


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


def start_runner(data_dir: Path, lease: float) -> subprocess.Popen:
    runner = subprocess.Popen(
        [sys.executable, "-m", "tests.support.job_runner", str(data_dir), str(lease)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    line = runner.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("ready"), line
    return runner


def test_a_dead_processs_job_is_taken_back_after_its_lease(make, tmp_path: Path) -> None:
    from tests.support.job_runner import types

    told: list[int] = []
    kinds = types()
    kinds["block"] = JobType(kinds["block"].handler, interrupted=lambda job: told.append(job.id))
    here = make(kinds, workers=0, lease=1.0)  # submits and reaps; runs nothing itself
    runner = start_runner(tmp_path, lease=1.0)
    try:
        job = here.submit("block", {"n": 1}, user_id=None, cluster_ids=[])
        assert runner.stdout.readline().split() == ["running", "1"]  # type: ignore[union-attr]
        time.sleep(2.5)  # well past the lease: the live runner keeps renewing it
        assert here.reap() == 0
        with here.sessions() as session:
            row = session.get(Job, job.id)
            assert row is not None and row.finished_at is None
            assert row.lease_owner is not None and row.lease_owner.startswith(
                f"{os.uname().nodename}:{tmp_path.resolve()}:runner-1#"
            )
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        deadline = time.monotonic() + 5
        while here.reap() == 0:
            assert time.monotonic() < deadline, "the dead runner's job was never taken back"
            time.sleep(0.2)
        done = wait(here, job.id)
        assert done.state == FAILURE and "stopped while it ran" in done.error_log
        assert told == [job.id]
    finally:
        runner.kill()
        runner.wait(10)


def test_a_restarted_process_takes_back_its_own_jobs_at_once(tmp_path: Path, make) -> None:
    from tests.support.job_runner import types

    here = make(types(), workers=0, lease=600.0)  # a lease that would outlast the test
    runner = start_runner(tmp_path, lease=600.0)
    job = here.submit("block", {"n": 2}, user_id=None, cluster_ids=[])
    assert runner.stdout.readline().split() == ["running", "2"]  # type: ignore[union-attr]
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    assert here.reap() == 0  # someone else's process: its lease has not run out
    again = start_runner(tmp_path, lease=600.0)  # same host, same data dir: slot runner-1
    try:
        # the restarted runner's own recover() is what takes it back
        deadline = time.monotonic() + 10
        while True:
            with here.sessions() as session:
                row = session.get(Job, job.id)
                assert row is not None
                if row.finished_at is not None:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert row.state == FAILURE
        quick = here.submit("quick", {}, user_id=None, cluster_ids=[])
        assert wait(here, quick.id).state == SUCCESS
    finally:
        again.kill()
        again.wait(10)


def test_a_taken_back_job_with_attempts_left_runs_again(tmp_path: Path, make) -> None:
    from tests.support.job_runner import types

    here = make(types(marks=tmp_path), workers=0, lease=600.0)
    runner = start_runner(tmp_path, lease=600.0)
    job = here.submit("resume", {"n": 3}, user_id=None, cluster_ids=[])
    assert runner.stdout.readline().split() == ["running", "3"]  # type: ignore[union-attr]
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    again = start_runner(tmp_path, lease=600.0)
    try:
        done = wait(here, job.id)
        assert done.state == SUCCESS and done.result == {"resumed": True}
        assert done.attempts == 2
    finally:
        again.kill()
        again.wait(10)


def test_jobs_lost_from_the_queue_are_queued_again(make, tmp_path: Path) -> None:
    ran: list[str] = []
    engine = make({"x": JobType(lambda a, c, p: ran.append(a["n"]) or {})}, workers=0, lease=1.0)
    jobs = [engine.submit("x", {"n": str(n)}, user_id=None, cluster_ids=[]) for n in range(3)]
    engine.queue.flush()  # the queue forgets them, as a Redis restart without persistence
    assert engine.queue.pending_count() == 0
    consumer = start_consumer(engine.queue, 1)
    try:
        engine.reap()  # too soon: they might be being claimed right now
        time.sleep(0.5)
        assert ran == []
        time.sleep(2.0)
        engine.reap()
        for job in jobs:
            assert wait(engine, job.id).state == SUCCESS
        assert sorted(ran) == ["0", "1", "2"]
    finally:
        consumer.stop(graceful=True)
