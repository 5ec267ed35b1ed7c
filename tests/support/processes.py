"""Starting and stopping the real processes tests talk to, always bounded in time."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ORIGIN_SCRIPT = Path(__file__).with_name("origin.py")


def damselfly_cmd() -> list[str]:
    return [sys.executable, "-m", "damselfly"]


def run_damselfly(
    *args: str,
    data_dir: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    if data_dir is not None:
        full_env["DAMSELFLY_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [*damselfly_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def _interruptible() -> None:
    # the child inherits SIGINT ignored (a suite started in the background) or blocked
    # (the mask of the thread that forks): give it Ctrl-C back, as a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_damselfly(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DAMSELFLY_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [*damselfly_cmd(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_interruptible,
    )


def stop(process: subprocess.Popen, *, grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_random(path: Path, size: int, seed: int = 0) -> str:
    """Deterministic pseudo-random bytes, returning their SHA-256."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            data = rng.randbytes(min(1 << 20, left))
            f.write(data)
            h.update(data)
            left -= len(data)
    return h.hexdigest()


@dataclass
class OriginProcess:
    process: subprocess.Popen
    root: Path
    port: int
    scheme: str = "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict:
        # stats are served over plain HTTP only when the origin is plain
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=5) as r:
            return json.loads(r.read())

    def requests_to(self, path: str) -> int:
        return self.stats()["requests"].get(path, 0)


def start_origin(root: Path, *, tls: tuple[Path, Path] | None = None) -> OriginProcess:
    cmd = [sys.executable, str(ORIGIN_SCRIPT), "--root", str(root), "--lifetime", "1200"]
    if tls:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line or time.monotonic() > deadline:
        stop(process)
        raise RuntimeError("test origin did not start")
    return OriginProcess(process, root, json.loads(line)["port"], "https" if tls else "http")
