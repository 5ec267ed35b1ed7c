"""Chaos, bounded and repeatable (a fixed random seed): processes killed with SIGKILL
in the middle of their work, and what the survivors must still deliver."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from damselfly import ids
from tests.support.cluster import Cluster, PeerProcess, wait_for
from tests.support.manager import start_manager, start_stack
from tests.support.processes import OriginProcess, sha256_file, write_random

MiB = 1 << 20
TRIALS = 20
PEERS = 8


def busy_parents(cluster: Cluster, task_id: str) -> set[str]:
    """Host IDs some unfinished peer is fetching from right now."""
    assert cluster.scheduler is not None
    peers = cluster.scheduler.task_hosts(task_id).values()
    return {h for p in peers if p["state"] != "succeeded" for h in p["parents"]}


def test_sigkill_a_random_parent_during_an_8_peer_download(
    cluster: Cluster, origin: OriginProcess, tmp_path: Path
) -> None:
    rng = random.Random(8)
    cluster.start_scheduler()
    # uploads are capped so the swarm is still busy when the kill comes
    cap = ("--upload-rate", "48MiB")
    by_host: dict[str, PeerProcess] = {}
    for name in ["seed", *(f"p{n}" for n in range(PEERS))]:
        peer = cluster.start_peer(name, *cap, seed=name == "seed")
        by_host[peer.host_id] = peer
    completed, killed, source_bytes, size = 0, [], 0, 24 * MiB
    for trial in range(TRIALS):
        started = time.monotonic()
        file = f"chaos-{trial}.bin"
        digest = write_random(origin.root / file, size, seed=trial)
        url = origin.url(f"/files/{file}")
        task_id = ids.task_id(ids.TaskIdentity(url=url))
        gets = {
            p.name: p.start_get(url, tmp_path / f"{trial}-{p.name}", "--timeout", "2m")
            for p in by_host.values()
            if p.name != "seed"
        }
        deadline, parents = time.monotonic() + 30, set()
        while not parents and time.monotonic() < deadline:
            parents = busy_parents(cluster, task_id)
            time.sleep(0.02)
        assert parents, f"trial {trial}: no peer was ever a parent"
        time.sleep(rng.uniform(0, 0.8))  # somewhere in the transfer, not always its start
        parents = busy_parents(cluster, task_id) or parents
        victim = by_host[rng.choice(sorted(parents))]
        victim.kill()
        t_kill = time.monotonic() - started
        killed.append(victim.name)
        for name, get in gets.items():
            _, err = get.communicate(timeout=150)
            if name == victim.name:
                continue  # its own download died with it
            assert get.returncode == 0, f"trial {trial}, {name}: {err}"
            assert sha256_file(tmp_path / f"{trial}-{name}") == digest, f"trial {trial}, {name}"
        completed += 1
        t_done = time.monotonic() - started
        source_bytes += origin.stats()["body_bytes"].get(f"/files/{file}", 0)
        print(
            f"trial {trial}: killed {victim.name} at {t_kill:.1f}s, done {t_done:.1f}s, "
            f"restarted {time.monotonic() - started:.1f}s"
        )
        restarted = cluster.start_peer(victim.name, *cap, seed=victim.name == "seed")
        by_host[restarted.host_id] = restarted
        for path in tmp_path.glob(f"{trial}-*"):
            path.unlink()
    print(
        f"{completed}/{TRIALS} downloads complete with the right digest after a parent "
        f"was killed (killed: {', '.join(killed)}); origin sent "
        f"{source_bytes / (TRIALS * size):.2f}x each file on average"
    )
    assert completed == TRIALS


def test_manager_sigkill_during_50_running_jobs(origin: OriginProcess, tmp_path: Path) -> None:
    manager, cluster, _ = start_stack(tmp_path, "--job-workers", "50")
    again = None
    try:
        token = manager.root_token
        cluster.start_peer("seed", seed=True)
        assert wait_for(lambda: len(cluster.scheduler.host_ids()) == 1)  # type: ignore[union-attr]
        jobs = []
        for n in range(50):  # each preheat reads 2 MiB at 512 KiB/s: ~4 s of work
            write_random(origin.root / f"jobs-{n}.bin", 2 * MiB, seed=n)
            url = origin.url(f"/slow/512/jobs-{n}.bin")
            _, job = manager.call("POST", "/api/v1/jobs", {"type": "preheat", "args": {"url": url}},
                                  token)  # fmt: skip
            jobs.append(job["id"])

        def running() -> int:
            listed = manager.call("GET", "/api/v1/jobs?state=PENDING&per_page=100", token=token)[1]
            return sum(1 for job in listed if job["started_at"] is not None)

        assert wait_for(lambda: running() == 50, timeout=30), f"only {running()} running"
        manager.process.send_signal(signal.SIGKILL)
        manager.process.wait(10)
        again = start_manager(manager.data_dir, "--job-workers", "50")
        assert "jobs recovered: 50 cut short" in again.banner, again.banner
        deadline, states = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            states = {
                job_id: again.call("GET", f"/api/v1/jobs/{job_id}", token=token)[1]
                for job_id in jobs
            }
            if all(job["state"] != "PENDING" for job in states.values()):
                break
            time.sleep(0.5)
        stuck = [job_id for job_id, job in states.items() if job["state"] == "PENDING"]
        failed = {job_id: job["error_log"] for job_id, job in states.items()
                  if job["state"] == "FAILURE"}  # fmt: skip
        print(
            f"manager SIGKILL with 50 jobs running: {len(jobs) - len(states)} lost, "
            f"{len(stuck)} stuck, {len(failed)} failed, "
            f"{sum(job['attempts'] == 2 for job in states.values())} run again"
        )
        assert len(states) == 50 and not stuck and not failed, (stuck, failed)
        assert all(job["attempts"] == 2 for job in states.values())
    finally:
        for process in (manager, again):
            if process is not None:
                process.stop()
        cluster.close()
