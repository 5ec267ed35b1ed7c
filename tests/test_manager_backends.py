"""The manager on a real PostgreSQL, and its job queue on a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import Postgres, Redis
from tests.support.manager import ManagerProcess, start_manager, start_stack
from tests.support.processes import OriginProcess, stop, write_random


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    server = Redis.start()
    yield server
    server.stop()


def run_job(manager: ManagerProcess) -> dict:
    token = manager.root_token
    status, job = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"task_id": "ab" * 32}}, token
    )
    assert status == 200, job
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        job = manager.call("GET", f"/api/v1/jobs/{job['id']}", token=token)[1]
        if job["state"] != "PENDING":
            return job
        time.sleep(0.05)
    raise AssertionError("job still PENDING")


def test_manager_on_postgresql(postgres: Postgres, tmp_path: Path) -> None:
    manager = start_manager(tmp_path / "m", "--database-url", postgres.url)
    try:
        token = manager.root_token
        assert manager.call("POST", "/api/v1/scheduler-clusters", {"name": "pg"}, token)[0] == 201
        status, _ = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "pg"}, token)
        assert status == 409
        # a cluster no scheduler has joined: the job ends FAILURE with an error log
        job = run_job(manager)
        assert job["state"] == "FAILURE"
        assert "has no active scheduler" in job["error_log"]
        assert job["result"]["task_id"] == "ab" * 32
    finally:
        manager.stop()
    # the same database after a restart: root kept, history kept, migrations idempotent
    again = start_manager(tmp_path / "m", "--database-url", postgres.url)
    try:
        assert "created user root" not in again.banner
        jobs = again.call("GET", "/api/v1/jobs", token=again.root_token)[1]
        assert [j["id"] for j in jobs] == [job["id"]]
    finally:
        again.stop()
    assert "Traceback" not in (tmp_path / "m" / "stderr.log").read_text()


def test_job_queue_on_redis(redis: Redis, tmp_path: Path) -> None:
    manager = start_manager(tmp_path / "m", "--redis-url", redis.url)
    try:
        job = run_job(manager)
        assert job["state"] == "SUCCESS"
        assert not (tmp_path / "m" / "jobs-queue.db").exists()  # delivered through Redis
    finally:
        manager.stop()
    assert "Traceback" not in (tmp_path / "m" / "stderr.log").read_text()


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    from tests.support.databases import free_port
    from tests.support.processes import run_damselfly

    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    result = run_damselfly(
        "manager", "--database-url", url, "--port", "0", "--data-dir", str(tmp_path), timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot open the manager database")
    assert "Traceback" not in result.stderr


def test_jobs_ride_out_redis_and_postgresql_restarts(
    postgres: Postgres, redis: Redis, origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, _ = start_stack(
        tmp_path, "--database-url", postgres.new_database("restarts"), "--redis-url", redis.url,
        "--job-workers", "4", "--job-lease", "3s",
    )  # fmt: skip
    try:
        token = manager.root_token
        cluster.start_peer("seed", seed=True)
        jobs = []
        for n in range(16):  # 1 MiB at 512 KiB/s each, four at a time: ~8 s of work
            write_random(origin.root / f"restart-{n}.bin", 1 << 20, seed=n)
            body = {"type": "preheat", "args": {"url": origin.url(f"/slow/512/restart-{n}.bin")}}
            jobs.append(manager.call("POST", "/api/v1/jobs", body, token)[1]["id"])
        time.sleep(1.0)
        redis.restart(down=1.0)  # no persistence: the queue is gone
        time.sleep(1.0)
        assert postgres.process is not None
        stop(postgres.process, grace=15)
        status, answer = manager.call("GET", "/api/v1/jobs", token=token)
        assert status == 503 and answer["code"] == "DatabaseUnavailable", answer
        time.sleep(2.0)
        postgres.restart(down=0)
        deadline, states = time.monotonic() + 120, {}
        while time.monotonic() < deadline:
            states = {j: manager.call("GET", f"/api/v1/jobs/{j}", token=token)[1] for j in jobs}
            if all(s.get("state") in ("SUCCESS", "FAILURE") for s in states.values()):
                break
            time.sleep(0.5)
        ended = {j: s["state"] for j, s in states.items()}
        print(f"after a Redis and a PostgreSQL restart: {ended}")
        assert all(state == "SUCCESS" for state in ended.values()), {
            j: s.get("error_log") for j, s in states.items() if s.get("state") != "SUCCESS"
        }
    finally:
        manager.stop()
        cluster.close()
    assert "Traceback" not in (manager.data_dir / "stderr.log").read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_models_schema(backend, tmp_path, request) -> None:
    """A model column or index without its migration (or the reverse) shows up here,
    not on a user's upgrade."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import damselfly.jobs.models
    import damselfly.manager.models
    import damselfly.media.models  # noqa: F401  (each registers its tables)
    from damselfly.database import Base
    from damselfly.manager.db import make_engine, migrate, sqlite_url

    if backend == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        url = request.getfixturevalue("postgres").new_database("schema")
    engine = make_engine(url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()
