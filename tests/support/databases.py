"""A throwaway PostgreSQL and redis-server on 127.0.0.1 (Debian packages), each in
its own temporary directory, stopped by the caller."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def _skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)


@dataclass
class Postgres:
    process: subprocess.Popen
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://damselfly@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls) -> Postgres:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            _skip("PostgreSQL is not installed (./dev test installs it with apt-get)")
        bindir = Path(binaries[-1]).parent
        root = Path(tempfile.mkdtemp(prefix="damselfly-pg-"))
        root.chmod(0o755)
        data = root / "data"
        # PostgreSQL refuses to run as root: then it runs as the postgres user
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "damselfly",
             "--auth=trust", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        port = free_port()
        process = subprocess.Popen(
            [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-h", "127.0.0.1", "-k", str(root), "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(port, process, "postgres")
        time.sleep(0.3)  # accepting connections a moment after listening
        return cls(process, port, root)

    def stop(self) -> None:
        stop(self.process, grace=15)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, port: int | None = None) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            _skip("redis-server is not installed (./dev test installs it with apt-get)")
        port = port or free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(port, process, "redis-server")
        return cls(process, port)

    def stop(self) -> None:
        stop(self.process, grace=10)
