"""Console page times with 10,000 executions and 10,000 media tasks in the database.

A real manager process over SQLite; the rows are written straight into its database
(delete_task jobs with per-cluster results and failures, media tasks with three
subtasks each). Each page is fetched `--rounds` times signed in, as a browser would
(first, middle and last page, with filters); the time is the whole HTTP exchange on
127.0.0.1, so it bounds the server's time. Target: under 200 ms.

Run: ./dev bench console_pages [--jobs 10000] [--media 10000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3
from sqlalchemy import insert
from tests.support.manager import PASSWORD_RE, start_manager

from damselfly.jobs.models import Job
from damselfly.manager.db import make_engine, sqlite_url
from damselfly.media.models import MediaSubtask, MediaTask


def fill(data_dir: Path, jobs: int, tasks: int) -> None:
    engine = make_engine(sqlite_url(data_dir))
    rng = random.Random(3)
    start = datetime.now(UTC) - timedelta(days=30)
    job_rows, task_rows, sub_rows = [], [], []
    for n in range(jobs):
        at = start + timedelta(seconds=n * 60)
        state = rng.choice(["SUCCESS", "SUCCESS", "FAILURE", "PENDING"])
        task_id = f"{rng.getrandbits(256):064x}"
        failures = [
            {
                "hostname": f"host-{k}",
                "ip": f"10.0.0.{k}",
                "host_type": "normal",
                "description": "peer did not answer within 5s",
            }
            for k in range(rng.randint(0, 12))
        ]
        job_rows.append(
            {
                "type": "delete_task",
                "state": state,
                "bio": "",
                "args": {"task_id": task_id},
                "result": {
                    "task_id": task_id,
                    "clusters": [
                        {"scheduler_cluster_id": 1, "success_tasks": [], "failure_tasks": failures}
                    ],
                },
                "error_log": "scheduler unreachable" if state == "FAILURE" else "",
                "scheduler_cluster_ids": [],
                "user_id": 1,
                "created_at": at,
                "updated_at": at,
                "started_at": at,
                "finished_at": at if state != "PENDING" else None,
                "progress": 100,
                "attempts": 1,
                "priority": 5,
            }
        )
    for n in range(tasks):
        at = start + timedelta(seconds=n * 60)
        tid = f"mt-{at:%Y%m%d}-{n:016x}"
        status = rng.choice(["FINISH", "FINISH", "WAITING", "PROCESSING"])
        task_rows.append(
            {
                "id": tid,
                "status": status,
                "failed": status == "FINISH" and n % 7 == 0,
                "error_code": "",
                "message": "",
                "input": {"kind": "path", "path": "/in/x.mp4", "name": "x.mp4"},
                "output_dir": f"/out/{tid}",
                "request": {"subtasks": []},
                "priority": 0,
                "session_id": None,
                "session_context": "",
                "media_info": None,
                "run": 1,
                "history": [],
                "recoveries": 0,
                "job_id": None,
                "workflow_id": None,
                "created_at": at,
                "updated_at": at,
                "begin_at": at,
                "finish_at": at if status == "FINISH" else None,
            }
        )
        for seq, kind in enumerate(("transcode", "snapshot", "content_understanding"), 1):
            sub_rows.append(
                {
                    "task_id": tid,
                    "seq": seq,
                    "type": kind,
                    "status": "SUCCESS",
                    "progress": 100,
                    "spec": {"type": kind, "template_id": 100010, "params": {}, "args": {}},
                    "outputs": [
                        {
                            "path": f"/out/{tid}/x_{seq}.mp4",
                            "name": f"x_{seq}.mp4",
                            "size": 1000,
                            "mime_type": "video/mp4",
                        }
                    ],
                    "result": None,
                    "error_code": "",
                    "message": "",
                    "begin_at": at,
                    "finish_at": at,
                }
            )
    with engine.begin() as conn:
        for table, rows in ((Job, job_rows), (MediaTask, task_rows), (MediaSubtask, sub_rows)):
            for chunk in range(0, len(rows), 2000):
                conn.execute(insert(table), rows[chunk : chunk + 2000])
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--media", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", default="artifacts/bench-console-pages.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="damselfly-console-"))
    manager = start_manager(root / "manager", "--media-workers", "0")
    try:
        password = PASSWORD_RE.search(manager.banner).group(1)  # type: ignore[union-attr]
        fill(manager.data_dir, args.jobs, args.media)
        http = urllib3.PoolManager()
        login = http.request(
            "POST",
            manager.url + "/console/login",
            redirect=False,
            fields={"name": "root", "password": password},
            encode_multipart=False,
        )
        cookie = login.headers["Set-Cookie"].split(";")[0]
        last_jobs, last_media = -(-args.jobs // 10), -(-args.media // 10)
        job_id = args.jobs // 2
        sample = f"mt-{(datetime.now(UTC) - timedelta(days=30)):%Y%m%d}"
        pages = {
            "search": "/console/tasks",
            "executions p1": "/console/executions",
            f"executions p{last_jobs // 2}": f"/console/executions?page={last_jobs // 2}",
            "executions last": f"/console/executions?page={last_jobs}",
            "executions failure": "/console/executions?state=FAILURE&page=3",
            "execution detail": f"/console/executions/{job_id}",
            "preheat": "/console/preheat",
            "media p1": "/console/media",
            f"media p{last_media // 2}": f"/console/media?page={last_media // 2}",
            "media last": f"/console/media?page={last_media}",
            "media WAITING": "/console/media?status=WAITING&page=5",
            "media search": f"/console/media?task_id={sample}",
            "media templates": "/console/media/templates",
        }
        results = {}
        for name, path in pages.items():
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                resp = http.request("GET", manager.url + path, headers={"Cookie": cookie})
                times.append((time.perf_counter() - started) * 1000)
                assert resp.status == 200, (path, resp.status)
            times.sort()
            results[name] = {
                "median_ms": statistics.median(times),
                "p95_ms": times[int(0.95 * (len(times) - 1))],
                "max_ms": times[-1],
            }
            print(
                f"{name:22} median {results[name]['median_ms']:6.1f} ms  "
                f"p95 {results[name]['p95_ms']:6.1f} ms  max {results[name]['max_ms']:6.1f} ms"
            )
        worst = max(r["p95_ms"] for r in results.values())
        print(
            f"worst p95: {worst:.1f} ms (target < 200 ms) with {args.jobs} executions and "
            f"{args.media} media tasks"
        )
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"pages": results, "worst_p95_ms": worst, "jobs": args.jobs, "media": args.media},
                indent=2,
            )
        )
    finally:
        manager.stop()


if __name__ == "__main__":
    main()
