"""A scheduler and peer daemons as real processes on 127.0.0.1, for P2P tests and
benchmarks. Every process is bounded: it is stopped when the cluster closes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import damselfly_cmd, run_damselfly, stop

_READY_TIMEOUT = 30.0


def spawn_service(args: list[str], data_dir: Path) -> subprocess.Popen[str]:
    """stderr goes to a file: a pipe nobody reads could fill and stall the process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "stderr.log").open("a") as err:
        return subprocess.Popen(
            [*damselfly_cmd(), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_ready(
    process: subprocess.Popen[str], pattern: str, log: Path | None = None
) -> re.Match[str]:
    """Read the process's stdout until its ready line; if it dies or stays silent, fail
    with its exit status and the end of `log` (its stderr), so CI shows why."""
    assert process.stdout is not None
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            return match
    exited = None
    with contextlib.suppress(subprocess.TimeoutExpired):
        exited = process.wait(timeout=2)  # its stdout closed: it is exiting
    stop(process)
    how = (
        f"exited with status {exited}"
        if exited is not None
        else f"printed no line matching {pattern!r} within {_READY_TIMEOUT:g}s"
    )
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else "(no log)"
    raise RuntimeError(f"process {process.args} {how}; its stderr ends:\n{tail}")


def http_json(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


@dataclass
class SchedulerProcess:
    process: subprocess.Popen[str]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        return http_json("GET", self.url + path)

    def task_hosts(self, task_id: str) -> dict[str, dict]:
        status, body = self.get(f"/api/v1/tasks/{task_id}")
        return {p["host_id"]: p for p in body["peers"]} if status == 200 else {}

    def host_ids(self) -> set[str]:
        return {h["id"] for h in self.get("/api/v1/hosts")[1]}


@dataclass
class PeerProcess:
    process: subprocess.Popen[str]
    name: str
    host_id: str
    port: int
    data_dir: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket(self) -> Path:
        return self.data_dir / "peer.sock"

    def _get_args(self, url: str, output: Path, extra: tuple[str, ...]) -> list[str]:
        return ["get", url, "-O", str(output), "--no-progress", "--data-dir", str(self.data_dir),
                *extra]  # fmt: skip

    def get(self, url: str, output: Path, *extra: str, timeout: float = 120):
        return run_damselfly(*self._get_args(url, output, extra), timeout=timeout)

    def start_get(self, url: str, output: Path, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*damselfly_cmd(), *self._get_args(url, output, extra)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def log(self) -> str:
        path = self.data_dir / "logs" / "peer.log"
        return path.read_text() if path.exists() else ""

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def content(self, task_id: str) -> Path:
        return self.data_dir / "content" / "tasks" / task_id[:3] / task_id


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.scheduler: SchedulerProcess | None = None
        self.peers: list[PeerProcess] = []

    def start_scheduler(self, port: int = 0, *extra: str) -> SchedulerProcess:
        data_dir = self.root / "scheduler"
        args = ["scheduler", "--listen", "127.0.0.1", "--port", str(port),
                "--data-dir", str(data_dir), *extra]  # fmt: skip
        process = spawn_service(args, data_dir)
        match = wait_ready(process, r"ready: http://[\d.]+:(\d+)", data_dir / "stderr.log")
        self.scheduler = SchedulerProcess(process, int(match.group(1)), data_dir)
        return self.scheduler

    def start_peer(self, name: str, *extra: str, seed: bool = False) -> PeerProcess:
        assert self.scheduler is not None
        data_dir = self.root / name
        args = [
            "peer",
            "--scheduler",
            self.scheduler.url,
            "--data-dir",
            str(data_dir),
            "--hostname",
            name,
            "--ip",
            "127.0.0.1",
            "--listen",
            "127.0.0.1",
            "--heartbeat-interval",
            "0.5",
            *(["--seed"] if seed else []),
            *extra,
        ]
        process = spawn_service(args, data_dir)
        match = wait_ready(
            process, r"peer (\S+) ready: upload [\d.]+:(\d+)", data_dir / "stderr.log"
        )
        peer = PeerProcess(process, name, match.group(1), int(match.group(2)), data_dir, args)
        self.peers.append(peer)
        return peer

    def tracebacks(self) -> list[str]:
        """stderr logs of our processes that show an unhandled exception."""
        return [
            str(path)
            for path in self.root.glob("*/stderr.log")
            if "Traceback" in path.read_text(errors="replace")
        ]

    def close(self) -> None:
        for peer in self.peers:
            stop(peer.process)
        if self.scheduler is not None:
            stop(self.scheduler.process)


def wait_for(condition, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
