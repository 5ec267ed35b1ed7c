"""`damselfly serve`: the embedded default, as the README's first command starts it."""

from __future__ import annotations

import time
from pathlib import Path

from damselfly import ids
from tests.support.cluster import http_json, spawn_service, wait_ready
from tests.support.processes import OriginProcess, run_damselfly, sha256_file, stop, write_random


def test_serve_runs_manager_scheduler_and_seed_peer(origin: OriginProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = spawn_service(
        ["serve", "--data-dir", str(data), "--port", "0", "--scheduler-port", "0"], data
    )
    try:
        match = wait_ready(process, r"API: (http://[\d.]+:\d+)/api/v1")
        api = match.group(1)
        token = (data / "manager" / "root-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}

        digest = write_random(origin.root / "serve.bin", 9 << 20, seed=51)
        url = origin.url("/files/serve.bin")
        result = run_damselfly(
            "get", url, "-O", str(tmp_path / "out"), "--no-progress", "--data-dir", str(data)
        )
        assert result.returncode == 0, result.stderr
        assert sha256_file(tmp_path / "out") == digest
        assert (data / "peer.sock").exists()  # it went through the seed peer

        status, job = http_json(
            "POST", f"{api}/api/v1/jobs", {"type": "get_task", "args": {"url": url}}, headers=auth
        )
        assert status == 200, job
        deadline = time.monotonic() + 10
        while job["state"] == "PENDING" and time.monotonic() < deadline:
            time.sleep(0.05)
            job = http_json("GET", f"{api}/api/v1/jobs/{job['id']}", headers=auth)[1]
        assert job["state"] == "SUCCESS", job["error_log"]
        [cluster] = job["result"]["clusters"]
        [peer] = cluster["peers"]
        assert peer["host_type"] == "super"
        assert job["result"]["task_id"] == ids.task_id(ids.TaskIdentity(url=url))
    finally:
        stop(process)
    assert process.returncode == 0
    assert "Traceback" not in (data / "stderr.log").read_text()
    assert not (data / "peer.sock").exists()
