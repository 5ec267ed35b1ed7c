"""Task jobs across 50 peers: get_task latency, and delete_task with 5 peers stopped.

50 peer daemons (real processes on 127.0.0.1) each hold one task; a manager and a
scheduler that registered with it. Measures create -> SUCCESS as seen through the API
(Dragonfly's manager first looks at a job ~30 s after creating it), and a delete with
5 peers SIGSTOPped: done within the per-peer timeout + 1 s, 45 deleted from disk,
5 failures with descriptions.

Run: ./dev bench jobs_fanout [--peers 50] [--stopped 5] [--timeout 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.cluster import wait_for
from tests.support.manager import ManagerProcess, start_stack
from tests.support.processes import start_origin, stop, write_random

from damselfly import ids


def timed_job(manager: ManagerProcess, body: dict) -> tuple[float, dict]:
    token = manager.root_token
    started = time.perf_counter()
    status, job = manager.call("POST", "/api/v1/jobs", body, token)
    assert status == 200, job
    while job["state"] == "PENDING":
        time.sleep(0.005)
        job = manager.call("GET", f"/api/v1/jobs/{job['id']}", token=token)[1]
    return time.perf_counter() - started, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--stopped", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0, help="per-peer delete timeout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="artifacts/bench-jobs-fanout.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="damselfly-jobs-"))
    (root / "origin").mkdir()
    origin = start_origin(root / "origin")
    manager, cluster, _ = start_stack(root)
    try:
        scheduler = cluster.scheduler
        assert scheduler is not None
        write_random(origin.root / "task.bin", 4 << 20, seed=7)
        url = origin.url("/files/task.bin")
        task_id = ids.task_id(ids.TaskIdentity(url=url))
        print(f"starting {args.peers} peers and filling them ...", flush=True)
        peers = [cluster.start_peer(f"p{n:02d}") for n in range(args.peers)]
        for n, peer in enumerate(peers):
            result = peer.get(url, root / f"out{n}")
            assert result.returncode == 0, result.stderr
        assert wait_for(lambda: len(scheduler.task_hosts(task_id)) == args.peers, timeout=30)

        get_times = []
        for _ in range(args.rounds):
            seconds, job = timed_job(manager, {"type": "get_task", "args": {"url": url}})
            assert job["state"] == "SUCCESS", job["error_log"]
            assert len(job["result"]["clusters"][0]["peers"]) == args.peers
            get_times.append(seconds)

        stopped = peers[: args.stopped]
        for peer in stopped:
            peer.process.send_signal(signal.SIGSTOP)
        try:
            body = {"type": "delete_task", "args": {"url": url, "timeout": args.timeout}}
            delete_seconds, job = timed_job(manager, body)
        finally:
            for peer in stopped:
                peer.process.send_signal(signal.SIGCONT)
        [result] = job["result"]["clusters"]
        gone = sum(not p.content(task_id).exists() for p in peers[args.stopped :])
        described = all(f["description"] for f in result["failure_tasks"])
        report = {
            "peers": args.peers,
            "get_task_seconds": [round(t, 3) for t in get_times],
            "get_task_median": round(statistics.median(get_times), 3),
            "get_task_max": round(max(get_times), 3),
            "vs_dragonfly_first_look_30s": round(30 / statistics.median(get_times), 1),
            "delete_seconds": round(delete_seconds, 3),
            "delete_budget_seconds": args.timeout + 1,
            "delete_state": job["state"],
            "successes": len(result["success_tasks"]),
            "failures": len(result["failure_tasks"]),
            "failures_described": described,
            "deleted_from_disk": gone,
        }
        print(
            f"get_task over {args.peers} peers: median {report['get_task_median']}s, max "
            f"{report['get_task_max']}s (target <= 1 s; Dragonfly first looks after 30 s: "
            f"{report['vs_dragonfly_first_look_30s']}x sooner)\n"
            f"delete_task with {args.stopped} peers stopped: {delete_seconds:.2f}s (target <= "
            f"{args.timeout + 1:g}s), {report['successes']} deleted, {report['failures']} "
            f"failed (described: {described}), {gone} really gone from disk"
        )
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        manager.stop()
        cluster.close()
        stop(origin.process)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
