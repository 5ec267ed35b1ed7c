"""`damselfly serve`: the embedded default, as the README's first command starts it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from damselfly import ids
from tests.support.cluster import http_json, spawn_service, wait_ready
from tests.support.media import make_clip
from tests.support.processes import (
    OriginProcess,
    damselfly_cmd,
    run_damselfly,
    sha256_file,
    stop,
    write_random,
)


def peer_task(url: str) -> str:
    return ids.task_id(ids.TaskIdentity(url=url))


def test_serve_runs_manager_scheduler_and_seed_peer(origin: OriginProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = spawn_service(
        ["serve", "--data-dir", str(data), "--port", "0", "--scheduler-port", "0"], data
    )
    try:
        match = wait_ready(process, r"API: (http://[\d.]+:\d+)/api/v1", data / "stderr.log")
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

        # the CLI, through the same manager
        cli = ["--manager", api, "--data-dir", str(data)]
        found = run_damselfly("task", "search", "--url", url, *cli)
        assert found.returncode == 0, found.stderr
        assert peer["id"] in found.stdout and "super" in found.stdout
        refused = subprocess.run(
            [*damselfly_cmd(), "task", "delete", "--url", url, *cli],
            input="no\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 1 and "not deleted" in refused.stderr
        assert (data / "content").exists() and any((data / "content").rglob(peer_task(url)))
        deleted = run_damselfly("task", "delete", "--url", url, "--yes", *cli)
        assert deleted.returncode == 0, deleted.stderr
        assert "deleted everywhere" in deleted.stdout
        assert not any((data / "content").rglob(peer_task(url)))
        listed = run_damselfly("jobs", "list", "--type", "delete_task", *cli)
        assert listed.returncode == 0 and "SUCCESS" in listed.stdout
        both = run_damselfly("task", "search", "--url", url, "--task-id", "0" * 64, *cli)
        assert both.returncode == 1 and both.stderr.count("\n") == 1
        assert "exactly one" in both.stderr
        bad = run_damselfly("task", "search", "--task-id", "xyz", *cli)
        assert bad.returncode == 1 and "64" in bad.stderr and "Traceback" not in bad.stderr
        # another host joins through the manager and fetches from the seed peer
        joiner = spawn_service(
            ["peer", "--manager", api, "--manager-token", token, "--data-dir",
             str(tmp_path / "joiner"), "--hostname", "joiner", "--ip", "127.0.0.1",
             "--listen", "127.0.0.1"],
            tmp_path / "joiner",
        )  # fmt: skip
        try:
            wait_ready(joiner, r"ready: upload", tmp_path / "joiner" / "stderr.log")
            again = write_random(origin.root / "serve2.bin", 5 << 20, seed=52)
            url2 = origin.url("/files/serve2.bin")
            assert run_damselfly(
                "get", url2, "-O", str(tmp_path / "seed-copy"), "--no-progress",
                "--data-dir", str(data),
            ).returncode == 0  # fmt: skip
            joined = run_damselfly(
                "get", url2, "-O", str(tmp_path / "joined"), "--no-progress",
                "--data-dir", str(tmp_path / "joiner"),
            )  # fmt: skip
            assert joined.returncode == 0, joined.stderr
            assert sha256_file(tmp_path / "joined") == again
            log = (tmp_path / "joiner" / "logs" / "peer.log").read_text()
            [done] = [line for line in log.splitlines() if "download task succeeded" in line]
            assert 'source_bytes="0"' in done and 'peer_bytes="5242880"' in done
        finally:
            stop(joiner)
        nobody = run_damselfly(
            "jobs", "list", "--manager", api, "--data-dir", str(tmp_path / "elsewhere")
        )
        assert nobody.returncode == 1 and "no API token" in nobody.stderr
    finally:
        stop(process)
    assert process.returncode == 0
    assert "Traceback" not in (data / "stderr.log").read_text()
    assert not (data / "peer.sock").exists()


def test_serve_media_fetches_url_inputs_through_its_seed_peer(
    origin: OriginProcess, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    make_clip(origin.root / "serve-clip.mp4")
    url = origin.url("/files/serve-clip.mp4")
    process = spawn_service(
        ["serve", "--data-dir", str(data), "--port", "0", "--scheduler-port", "0"], data
    )
    try:
        api = wait_ready(process, r"API: (http://[\d.]+:\d+)/api/v1", data / "stderr.log").group(1)
        auth = {"Authorization": f"Bearer {(data / 'manager' / 'root-token').read_text().strip()}"}
        body = {"input": {"url": url}, "transcodes": [{"template_id": 100010}]}
        status, task = http_json("POST", f"{api}/api/v1/media/tasks", body, headers=auth)
        assert status == 200, task
        deadline = time.monotonic() + 60
        while task["status"] != "FINISH" and time.monotonic() < deadline:
            time.sleep(0.2)
            task = http_json("GET", f"{api}/api/v1/media/tasks/{task['task_id']}",
                             headers=auth)[1]  # fmt: skip
        assert task["status"] == "FINISH" and not task["failed"], task
        output = Path(task["subtasks"][0]["outputs"][0]["path"])
        assert output.is_relative_to(data / "media" / "output") and output.is_file()
        # the input went through the seed peer: its store holds the task, a get is a hit
        assert any((data / "content").rglob(peer_task(url)))
        hit = run_damselfly("get", url, "-O", str(tmp_path / "again.mp4"), "--no-progress",
                            "--data-dir", str(data))  # fmt: skip
        assert hit.returncode == 0
        assert origin.requests_to("/files/serve-clip.mp4") <= 2  # stat + one read, once
    finally:
        stop(process)
    assert process.returncode == 0
    assert "Traceback" not in (data / "stderr.log").read_text()
