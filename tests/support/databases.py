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


def _wait_port(
    port: int, process: subprocess.Popen, what: str, timeout: float = 30, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
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
    process: subprocess.Popen | None  # None until started
    port: int
    root: Path
    host: str = "127.0.0.1"
    command: list[str] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://damselfly@{self.host}:{self.port}/postgres"

    def new_database(self, name: str) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(
            f"postgresql://damselfly@{self.host}:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://damselfly@{self.host}:{self.port}/{name}"

    @classmethod
    def start(cls, host: str = "127.0.0.1") -> Postgres:
        """Listening on `host` (another address: clients from anywhere are trusted)."""
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
        if host != "127.0.0.1":
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all 0.0.0.0/0 trust\n")
        port = free_port()
        command = [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                   "-h", host, "-k", str(root), "-c", "fsync=off"]  # fmt: skip
        server = cls(None, port, root, host, command)
        server._run()
        return server

    def _run(self) -> None:
        assert self.command is not None
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_port(self.port, self.process, "postgres", host=self.host)
        time.sleep(0.3)  # accepting connections a moment after listening

    def restart(self, down: float = 1.0) -> None:
        """Stop (fast shutdown: clients are cut off), stay down `down` s, start again."""
        assert self.process is not None
        stop(self.process, grace=15)
        time.sleep(down)
        self._run()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=15)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    process: subprocess.Popen
    port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @classmethod
    def start(cls, port: int | None = None, host: str = "127.0.0.1") -> Redis:
        """No persistence: a restart loses the queue, the worst case jobs must survive."""
        binary = shutil.which("redis-server")
        if binary is None:
            _skip("redis-server is not installed (./dev test installs it with apt-get)")
        port = port or free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", host, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(port, process, "redis-server", host=host)
        return cls(process, port, host)

    def restart(self, down: float = 1.0) -> None:
        stop(self.process, grace=10)
        time.sleep(down)
        self.process = Redis.start(self.port, self.host).process

    def stop(self) -> None:
        stop(self.process, grace=10)
