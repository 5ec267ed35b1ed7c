"""Task jobs end to end: a manager, a scheduler and peers as real processes."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly import ids
from tests.support.cluster import Cluster, wait_for
from tests.support.manager import ManagerProcess, start_manager, start_stack
from tests.support.processes import OriginProcess, write_random

MiB = 1 << 20


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[ManagerProcess, Cluster, int]]:
    """A manager with one scheduler cluster whose scheduler registered itself."""
    manager, cluster, cluster_id = start_stack(tmp_path)
    try:
        yield manager, cluster, cluster_id
    finally:
        manager.stop()
        cluster.close()
    assert "Traceback" not in (manager.data_dir / "stderr.log").read_text()


def wait_job(manager: ManagerProcess, job_id: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = manager.call("GET", f"/api/v1/jobs/{job_id}", token=manager.root_token)
        if job["state"] != "PENDING":
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still PENDING after {timeout}s")


def running_delete(manager: ManagerProcess, url: str, timeout: float) -> dict:
    """A delete_task job, once a worker has started it (a stopped peer keeps it busy)."""
    token = manager.root_token
    body = {"type": "delete_task", "args": {"url": url, "timeout": timeout}}
    _, job = manager.call("POST", "/api/v1/jobs", body, token)

    def started() -> bool:
        return (
            manager.call("GET", f"/api/v1/jobs/{job['id']}", token=token)[1]["started_at"]
            is not None
        )

    assert wait_for(started)
    return job


def holders(cluster: Cluster, origin: OriginProcess, tmp_path: Path, name: str, n: int) -> str:
    write_random(origin.root / name, 5 * MiB, seed=len(name))
    url = origin.url(f"/files/{name}")
    for i in range(n):
        peer = cluster.start_peer(f"{name}-{i}")
        assert peer.get(url, tmp_path / f"{name}-{i}.out").returncode == 0
    task_id = ids.task_id(ids.TaskIdentity(url=url))
    assert wait_for(lambda: len(cluster.scheduler.task_hosts(task_id)) == n)
    return url


def test_get_task_finds_every_holder_within_a_second(
    stack: tuple[ManagerProcess, Cluster, int], origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, cluster_id = stack
    url = holders(cluster, origin, tmp_path, "job-get.bin", 3)
    started = time.monotonic()
    status, job = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url}}, manager.root_token
    )
    assert status == 200 and job["state"] == "PENDING"
    done = wait_job(manager, job["id"])
    took = time.monotonic() - started
    assert done["state"] == "SUCCESS", done["error_log"]
    assert took < 1.0
    [result] = done["result"]["clusters"]
    assert result["scheduler_cluster_id"] == cluster_id
    assert {p["id"] for p in result["peers"]} == {p.host_id for p in cluster.peers}
    assert all(p["host_type"] == "normal" and p["ip"] == "127.0.0.1" for p in result["peers"])
    # by task ID and by an unknown task: an empty answer, still SUCCESS
    task_id = done["result"]["task_id"]
    _, by_id = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"task_id": task_id}},
        manager.root_token,
    )  # fmt: skip
    assert len(wait_job(manager, by_id["id"])["result"]["clusters"][0]["peers"]) == 3
    _, none = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url + "?x=1"}},
        manager.root_token,
    )  # fmt: skip
    assert wait_job(manager, none["id"])["result"]["clusters"][0]["peers"] == []


def test_delete_task_with_a_stopped_peer(
    stack: tuple[ManagerProcess, Cluster, int], origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, _ = stack
    url = holders(cluster, origin, tmp_path, "job-delete.bin", 4)
    task_id = ids.task_id(ids.TaskIdentity(url=url))
    frozen = cluster.peers[3]
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        _, job = manager.call(
            "POST", "/api/v1/jobs",
            {"type": "delete_task", "args": {"url": url, "timeout": 2}}, manager.root_token,
        )  # fmt: skip
        done = wait_job(manager, job["id"])
        took = time.monotonic() - started
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    assert done["state"] == "SUCCESS", done["error_log"]
    assert took < 2 + 1
    [result] = done["result"]["clusters"]
    assert len(result["success_tasks"]) == 3
    [failure] = result["failure_tasks"]
    assert failure["hostname"] == frozen.name and failure["description"]
    for peer in cluster.peers[:3]:
        assert not peer.content(task_id).exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"type": "nonsense", "args": {}}, "unknown job type"),
        ({"type": "get_task", "args": {}}, "task_id, content_for_calculating_task_id or url"),
        ({"type": "get_task", "args": {"task_id": "abc"}}, "64"),
        ({"type": "get_task", "args": {"url": "http://x/y", "piece_length": 1024}}, "4 MiB"),
        ({"type": "delete_task", "args": {"url": "http://x/y", "timeout": 0}}, "timeout"),
        ({"type": "get_task", "args": {"url": "file:///etc/passwd"}}, "http"),
    ],
)
def test_bad_jobs_are_refused_with_422(
    stack: tuple[ManagerProcess, Cluster, int], body: dict, message: str
) -> None:
    manager, _, _ = stack
    status, answer = manager.call("POST", "/api/v1/jobs", body, manager.root_token)
    assert status == 422, answer
    assert message in answer["message"]


def test_jobs_list_pages_newest_first_and_guests_only_read(
    stack: tuple[ManagerProcess, Cluster, int],
) -> None:
    manager, _, _ = stack
    root = manager.root_token
    made = [
        manager.call(
            "POST",
            "/api/v1/jobs",
            {"type": "get_task", "args": {"task_id": f"{n:064x}"}},
            root,
        )[1]["id"]
        for n in range(5)
    ]
    for job_id in made:
        wait_job(manager, job_id)
    import urllib.request

    request = urllib.request.Request(
        manager.url + "/api/v1/jobs?type=get_task&per_page=2&page=2",
        headers={"Authorization": f"Bearer {root}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        import json

        page = json.loads(resp.read())
        link = resp.headers["Link"]
    assert [j["id"] for j in page] == [made[2], made[1]]
    assert 'rel="next"' in link and 'rel="prev"' in link and "page=3" in link
    manager.call("POST", "/api/v1/users", {"name": "g", "password": "guest-pass"}, root)
    guest = manager.call("POST", "/api/v1/users/signin", {"name": "g", "password": "guest-pass"})[
        1
    ]["token"]
    assert manager.call("GET", "/api/v1/jobs", token=guest)[0] == 200
    status, _ = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"task_id": "0" * 64}}, guest
    )
    assert status == 403
    assert manager.call("DELETE", f"/api/v1/jobs/{made[0]}", token=guest)[0] == 403
    assert manager.call("DELETE", f"/api/v1/jobs/{made[0]}", token=root)[0] == 200
    assert manager.call("GET", f"/api/v1/jobs/{made[0]}", token=root)[0] == 404


def test_manager_killed_mid_job_leaves_no_job_pending(
    stack: tuple[ManagerProcess, Cluster, int], origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, _ = stack
    url = holders(cluster, origin, tmp_path, "job-kill.bin", 1)
    stuck = cluster.peers[0]
    stuck.process.send_signal(signal.SIGSTOP)  # the delete waits on it for 20 s
    try:
        running = running_delete(manager, url, 20)
        manager.process.send_signal(signal.SIGKILL)
        manager.process.wait(10)
    finally:
        stuck.process.send_signal(signal.SIGCONT)
    again = start_manager(manager.data_dir)
    try:
        job = wait_job(again, running["id"])
        # taken back at once (the same node), and run again: its peer answers now
        assert job["state"] == "SUCCESS" and job["attempts"] == 2, job
        assert "jobs recovered: 1 cut short" in again.banner
        _, fresh = again.call(
            "POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url}}, again.root_token
        )
        assert wait_job(again, fresh["id"])["state"] == "SUCCESS"
    finally:
        again.stop()


def test_job_events_stream_every_change(stack: tuple[ManagerProcess, Cluster, int]) -> None:
    import json
    import threading
    import urllib.request

    manager, _, _ = stack
    token = manager.root_token
    events: list[dict] = []
    connected = threading.Event()

    def listen() -> None:
        request = urllib.request.Request(
            manager.url + "/api/v1/jobs/events", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=20) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            for raw in resp:
                line = raw.decode().strip()
                if line == ": connected":
                    connected.set()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["state"] != "PENDING":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(10)
    _, job = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"task_id": "cd" * 32}}, token
    )
    listener.join(15)
    mine = [e for e in events if e["id"] == job["id"]]
    assert mine[0]["state"] == "PENDING"
    assert mine[-1]["state"] == "SUCCESS"
    assert any(e["started_at"] for e in mine)
    # no token, no stream
    assert manager.call("GET", "/api/v1/jobs/events")[0] == 401


def test_preheat_files_onto_seed_or_all_peers(
    stack: tuple[ManagerProcess, Cluster, int], origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, _ = stack
    token = manager.root_token
    seed = cluster.start_peer("seed", seed=True)
    normal = cluster.start_peer("normal")
    write_random(origin.root / "preheat.bin", 6 * MiB, seed=61)
    url = origin.url("/files/preheat.bin")
    task_id = ids.task_id(ids.TaskIdentity(url=url))
    assert wait_for(lambda: len(cluster.scheduler.host_ids()) == 2)

    _, job = manager.call(
        "POST", "/api/v1/jobs", {"type": "preheat", "args": {"type": "file", "url": url}}, token
    )
    done = wait_job(manager, job["id"])
    assert done["state"] == "SUCCESS", done["error_log"]
    [hosts] = [t["hosts"] for t in done["result"]["clusters"][0]["tasks"]]
    assert [(h["hostname"], h["state"]) for h in hosts] == [("seed", "succeeded")]
    assert seed.content(task_id).exists() and not normal.content(task_id).exists()

    _, job = manager.call(
        "POST", "/api/v1/jobs",
        {"type": "preheat", "args": {"url": url, "scope": "all_peers"}}, token,
    )  # fmt: skip
    done = wait_job(manager, job["id"])
    assert done["state"] == "SUCCESS", done["error_log"]
    assert normal.content(task_id).exists()
    assert origin.stats()["body_bytes"]["/files/preheat.bin"] == 6 * MiB  # the seed's read

    _, job = manager.call(
        "POST", "/api/v1/jobs", {"type": "preheat", "args": {"url": origin.url("/status/404")}},
        token,
    )  # fmt: skip
    failed = wait_job(manager, job["id"])
    assert failed["state"] == "FAILURE"
    assert "seed" in failed["error_log"] and "could not preheat" in failed["error_log"]
    assert "404" in failed["error_log"]

    for args, message in [
        ({"url": url, "scope": "everywhere"}, "scope"),
        ({"type": "image", "url": url}, "image"),
        ({"url": url, "headers": ["Authorization: x"]}, "headers"),
        ({"url": url, "username": "u"}, "username and password"),
        ({}, "url or urls"),
    ]:
        status, answer = manager.call(
            "POST", "/api/v1/jobs", {"type": "preheat", "args": args}, token
        )
        assert status == 422 and message in answer["message"], (args, answer)


def test_failed_attempt_is_retried_with_the_same_args(
    stack: tuple[ManagerProcess, Cluster, int],
) -> None:
    manager, cluster, _ = stack
    scheduler = cluster.scheduler
    scheduler.process.kill()
    scheduler.process.wait(10)
    _, job = manager.call(
        "POST", "/api/v1/jobs", {"type": "get_task", "args": {"task_id": "ef" * 32}},
        manager.root_token,
    )  # fmt: skip
    cluster.start_scheduler(scheduler.port)  # back before the retry (1 s later)
    done = wait_job(manager, job["id"])
    assert done["state"] == "SUCCESS", done["error_log"]
    assert done["attempts"] >= 2 and done["progress"] == 100
    assert done["args"] == {"task_id": "ef" * 32}
    log = (manager.data_dir / "logs" / "manager.log").read_text()
    assert "job attempt failed, retrying" in log


def test_queued_job_can_be_canceled_running_one_cannot(
    origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, _ = start_stack(tmp_path, "--job-workers", "1")
    token = manager.root_token
    try:
        url = holders(cluster, origin, tmp_path, "job-cancel.bin", 1)
        cluster.peers[0].process.send_signal(signal.SIGSTOP)  # the delete waits 5 s on it
        try:
            running = running_delete(manager, url, 5)
            _, queued = manager.call(
                "POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url}}, token
            )
            assert manager.call("DELETE", f"/api/v1/jobs/{queued['id']}", token=token)[0] == 200
            status, refused = manager.call("DELETE", f"/api/v1/jobs/{running['id']}", token=token)
            assert status == 409 and "running" in refused["message"]
        finally:
            cluster.peers[0].process.send_signal(signal.SIGCONT)
        canceled = wait_job(manager, queued["id"])
        assert canceled["state"] == "FAILURE" and canceled["result"] == {"canceled": True}
        assert wait_job(manager, running["id"])["state"] == "SUCCESS"
        time.sleep(0.5)  # the canceled job's queue message arrives and is skipped
        again = manager.call("GET", f"/api/v1/jobs/{queued['id']}", token=token)[1]
        assert again["attempts"] == 0 and again["error_log"] == "canceled before it started"
    finally:
        manager.stop()
        cluster.close()


def test_preheat_credentials_are_sealed_not_stored(
    stack: tuple[ManagerProcess, Cluster, int], origin: OriginProcess, tmp_path: Path
) -> None:
    import sqlite3

    manager, cluster, _ = stack
    token = manager.root_token
    seed = cluster.start_peer("seed", seed=True)
    write_random(origin.root / "secret.bin", 5 * MiB, seed=71)
    url = origin.url("/auth/secret.bin")
    assert wait_for(lambda: seed.host_id in cluster.scheduler.host_ids())
    args = {"url": url, "headers": {"Authorization": "Bearer let-me-in"}}
    _, job = manager.call("POST", "/api/v1/jobs", {"type": "preheat", "args": args}, token)
    assert job["args"]["headers"] == {"Authorization": "******"}
    done = wait_job(manager, job["id"])
    assert done["state"] == "SUCCESS", done["error_log"]
    assert seed.content(ids.task_id(ids.TaskIdentity(url=url))).exists()
    # nowhere in clear: not in the database, the queue, the API or the manager's log
    for name in ("manager.db", "manager.db-wal", "jobs-queue.db", "jobs-queue.db-wal"):
        path = manager.data_dir / name
        if path.exists():
            assert b"let-me-in" not in path.read_bytes(), name
    row = (
        sqlite3.connect(manager.data_dir / "manager.db")
        .execute("SELECT args FROM jobs WHERE id = ?", (job["id"],))
        .fetchone()[0]
    )
    assert "$sealed" in row
    assert "let-me-in" not in (manager.data_dir / "logs" / "manager.log").read_text()
    # without the credential the origin refuses, and the job says so
    _, bare = manager.call(
        "POST", "/api/v1/jobs", {"type": "preheat", "args": {"url": url + "?2"}}, token
    )
    failed = wait_job(manager, bare["id"])
    assert failed["state"] == "FAILURE" and "401" in failed["error_log"]


def test_jobs_queued_behind_a_killed_manager_run_after_restart(
    origin: OriginProcess, tmp_path: Path
) -> None:
    manager, cluster, _ = start_stack(tmp_path, "--job-workers", "1")
    try:
        token = manager.root_token
        url = holders(cluster, origin, tmp_path, "job-queued.bin", 1)
        cluster.peers[0].process.send_signal(signal.SIGSTOP)
        try:
            running = running_delete(manager, url, 20)
            queued = [
                manager.call(
                    "POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url}}, token
                )[1]["id"]
                for _ in range(3)
            ]
            manager.process.send_signal(signal.SIGKILL)
            manager.process.wait(10)
        finally:
            cluster.peers[0].process.send_signal(signal.SIGCONT)
        again = start_manager(manager.data_dir)
        try:
            retried = wait_job(again, running["id"])
            assert retried["state"] == "SUCCESS" and retried["attempts"] == 2, retried
            for job_id in queued:
                done = wait_job(again, job_id)
                assert done["state"] == "SUCCESS" and done["attempts"] == 1, done
            listed = again.call("GET", "/api/v1/jobs?state=PENDING", token=again.root_token)[1]
            assert listed == []
        finally:
            again.stop()
    finally:
        manager.stop()
        cluster.close()
