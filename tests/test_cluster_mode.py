"""Cluster mode as it is deployed: the manager on PostgreSQL with its queues on Redis
(real servers, on the test bridge), two scheduler clusters, seed peers and peers, and
`damselfly worker`s on other hosts doing the jobs and the media work. Every host is a
network namespace with its own IP (support/netns.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly import ids
from tests.support.cluster import http_json, wait_for
from tests.support.databases import Postgres, Redis
from tests.support.fleet import SUPPORT, UPLOAD, Fleet, printed_port
from tests.support.media import MOVING, make_clip, probe
from tests.support.netns import Lan, unavailable
from tests.support.processes import damselfly_cmd, write_random

LEASE = "3s"


@dataclass
class Deployment:
    fleet: Fleet
    manager: str  # its URL
    token: str
    clusters: dict[str, int]  # cluster name -> ID
    postgres: Postgres
    shared: Path  # the media roots every worker mounts
    origin: str  # base URL

    def call(self, method: str, path: str, body=None) -> tuple[int, dict]:
        return http_json(method, self.manager + path, body,
                         headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip

    def wait_job(self, job_id: int, timeout: float = 30) -> dict:
        job: dict = {}

        def ended() -> bool:
            job.update(self.call("GET", f"/api/v1/jobs/{job_id}")[1])
            return job["state"] != "PENDING"

        assert wait_for(ended, timeout=timeout, interval=0.1), job
        return job


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    reason = unavailable()
    if reason:
        print(f"cluster-mode tests skipped: {reason}")
        pytest.skip(reason)
    lan = Lan(tag=f"{os.getpid() % 10000:04d}k").start()
    root = tmp_path_factory.mktemp("deployment")
    fleet = Fleet(lan, root)
    postgres = redis = None
    try:
        postgres = Postgres.start(host=lan.gateway)
        redis = Redis.start(host=lan.gateway)
        shared = root / "shared"
        for part in ("in", "out"):
            (shared / part).mkdir(parents=True)
        media_roots = ("--media-input-root", str(shared / "in"),
                       "--media-output-root", str(shared / "out"))  # fmt: skip
        backends = ("--database-url", postgres.url, "--redis-url", redis.url)

        core = lan.add_host("mgr")
        files = root / "origin-files"
        files.mkdir()
        origin = fleet.run(core, [sys.executable, str(SUPPORT / "origin.py"), "--root",
                                  str(files), "--listen", core.ip, "--lifetime", "900"],
                           "origin")  # fmt: skip
        origin_url = f"http://{core.ip}:{printed_port(origin)}"
        manager_url = f"http://{core.ip}:8080"
        fleet.damselfly(core, "manager", "manager", "--listen", core.ip, "--port", "8080",
                        "--data-dir", str(root / "manager"), *backends, "--job-workers", "0",
                        "--media-workers", "0", "--job-lease", LEASE, *media_roots,
                        ready=r"manager ready: http://")  # fmt: skip
        token = (root / "manager" / "manager" / "root-token").read_text().strip()
        deployment = Deployment(fleet, manager_url, token, {}, postgres, shared, origin_url)
        for name in ("east", "west"):
            status, made = deployment.call("POST", "/api/v1/scheduler-clusters", {"name": name})
            assert status == 201, made
            deployment.clusters[name] = made["id"]
            host = lan.add_host(f"s-{name}")
            fleet.damselfly(host, f"scheduler-{name}", "scheduler", "--listen", host.ip,
                            "--port", "8002", "--data-dir", str(root / f"scheduler-{name}"),
                            "--manager", manager_url, "--cluster-id", str(made["id"]),
                            "--manager-token", token, "--advertise-ip", host.ip,
                            ready=r"scheduler ready")  # fmt: skip
        assert wait_for(lambda: len(deployment.call("GET", "/api/v1/schedulers")[1]) == 2)
        for name, cluster, seed in [("seed-east", "east", True), ("seed-west", "west", True),
                                    ("e1", "east", False), ("e2", "east", False),
                                    ("w1", "west", False)]:  # fmt: skip
            host = lan.add_host(name)
            fleet.damselfly(host, name, "peer", "--manager", manager_url, "--manager-token",
                            token, "--cluster-id", str(deployment.clusters[cluster]),
                            "--data-dir", str(root / name), "--hostname", name, "--ip", host.ip,
                            "--listen", host.ip, "--port", str(UPLOAD),
                            "--heartbeat-interval", "0.5", *(["--seed"] if seed else []),
                            ready=r"peer (\S+) ready")  # fmt: skip
            fleet.peers[name] = (host, root / name)
        key = root / "manager" / "manager" / "secret.key"
        for name in ("worker-1", "worker-2"):
            host = lan.add_host(name)
            fleet.damselfly(host, name, "worker", "--data-dir", str(root / name), *backends,
                            "--workers", "1", "--job-workers", "2", "--secret-key-file",
                            str(key), "--job-lease", LEASE, *media_roots,
                            ready=r"worker ready: 1 media worker\(s\), 2 job")  # fmt: skip
        yield deployment
        assert not fleet.tracebacks(), fleet.tracebacks()
    finally:
        fleet.close()
        for server in (redis, postgres):
            if server is not None:
                server.stop()
        lan.close()


def get(deployment: Deployment, name: str, url: str) -> None:
    host, data = deployment.fleet.peers[name]
    result = subprocess.run(
        host.cmd([*damselfly_cmd(), "get", url, "-O", str(data / "out.bin"), "--no-progress",
                  "--data-dir", str(data)]),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def ran_on(deployment: Deployment, job_id: int) -> list[str]:
    """Which workers' logs say they finished job `job_id`."""
    return [
        name for name in ("worker-1", "worker-2")
        if f'job finished job_id="{job_id}"' in
        (deployment.fleet.root / name / "logs" / "worker.log").read_text()
    ]  # fmt: skip


def test_every_host_joins_its_cluster_with_its_own_address(deployment: Deployment) -> None:
    schedulers = deployment.call("GET", "/api/v1/schedulers")[1]
    by_cluster = {s["cluster_id"]: s for s in schedulers}
    assert set(by_cluster) == set(deployment.clusters.values())
    for s in schedulers:
        assert s["state"] == "active" and s["port"] == 8002
    assert len({s["ip"] for s in schedulers}) == 2


def test_jobs_run_on_workers_and_reach_both_clusters(deployment: Deployment) -> None:
    files = deployment.fleet.root / "origin-files"
    write_random(files / "both.bin", 12 << 20, seed=8)
    url = f"{deployment.origin}/files/both.bin"
    for name in ("e1", "w1"):
        get(deployment, name, url)
    task_id = ids.task_id(ids.TaskIdentity(url=url))
    _, job = deployment.call("POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url}})
    found = deployment.wait_job(job["id"])
    assert found["state"] == "SUCCESS", found["error_log"]
    holders = {c["scheduler_cluster_id"]: {p["hostname"] for p in c["peers"]}
               for c in found["result"]["clusters"]}  # fmt: skip
    east, west = deployment.clusters["east"], deployment.clusters["west"]
    assert "e1" in holders[east] and "w1" in holders[west]
    assert len(ran_on(deployment, job["id"])) == 1  # a worker did it; the manager has none

    _, job = deployment.call("POST", "/api/v1/jobs",
                             {"type": "delete_task", "args": {"url": url}})  # fmt: skip
    deleted = deployment.wait_job(job["id"])
    assert deleted["state"] == "SUCCESS", deleted["error_log"]
    for name in ("e1", "w1", "seed-east", "seed-west"):
        _, data = deployment.fleet.peers[name]
        assert not (data / "content" / "tasks" / task_id[:3] / task_id).exists(), name


def test_a_killed_media_worker_hands_its_transcode_to_the_other(deployment: Deployment) -> None:
    import psycopg

    make_clip(deployment.shared / "in" / "long.mp4", seconds=16, size=(1280, 720), graph=MOVING)
    status, task = deployment.call("POST", "/api/v1/media/tasks", {
        "input": {"path": "long.mp4"}, "transcodes": [{"template_id": 100040}]})  # fmt: skip
    assert status == 200, task
    task_id = task["task_id"]
    out_dir = deployment.shared / "out" / task_id

    def view() -> dict:
        return deployment.call("GET", f"/api/v1/media/tasks/{task_id}")[1]

    assert wait_for(lambda: view()["progress"] >= 10, timeout=90)
    url = deployment.postgres.url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        [(owner,)] = conn.execute(
            "SELECT lease_owner FROM jobs WHERE finished_at IS NULL AND started_at IS NOT NULL"
            " AND type LIKE 'media%'"
        ).fetchall()
    victim = "worker-1" if "worker-1" in owner else "worker-2"
    process = deployment.fleet.processes[victim]
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = time.monotonic()
    visible = [p.name for p in out_dir.iterdir() if not p.name.startswith(".")]
    assert visible == [], "a partial output must never be visible"
    done: dict = {}

    def finished() -> bool:
        done.update(view())
        return done["status"] == "FINISH"

    assert wait_for(finished, timeout=180, interval=0.5), done
    print(f"transcode taken over {time.monotonic() - killed_at:.1f}s after {victim} was killed")
    assert not done["failed"], done
    assert sorted(p.name for p in out_dir.iterdir()) == ["long_transcode_100040.mp4"]
    assert abs(probe(out_dir / "long_transcode_100040.mp4")["duration"] - 16) < 0.1
    other = "worker-2" if victim == "worker-1" else "worker-1"
    log = (deployment.fleet.root / other / "logs" / "worker.log").read_text()
    assert f'media task started task_id="{task_id}" run="1"' in log
    # every process keeps leases, so the manager or the other worker took the job back
    manager_log = (deployment.fleet.root / "manager" / "logs" / "manager.log").read_text()
    assert "job taken back" in log + manager_log
    # and it can be run again, by the worker left
    status, _ = deployment.call("POST", f"/api/v1/media/tasks/{task_id}/restart")
    assert status == 200
    assert wait_for(lambda: view()["status"] == "FINISH" and view()["run"] == 2, timeout=180)
