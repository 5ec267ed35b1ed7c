"""A manager process on 127.0.0.1 for tests, and a small JSON client for its API."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster, http_json, spawn_service, wait_for, wait_ready
from tests.support.processes import stop


@dataclass
class ManagerProcess:
    process: subprocess.Popen[str]
    port: int
    data_dir: Path
    banner: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root_token(self) -> str:
        return (self.data_dir / "manager" / "root-token").read_text().strip()

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http_json(method, self.url + path, body, headers=headers)

    def stop(self) -> None:
        stop(self.process)


def start_manager(data_dir: Path, *extra: str) -> ManagerProcess:
    process = spawn_service(
        ["manager", "--listen", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *extra],
        data_dir,
    )
    match = wait_ready(process, r"manager ready: http://[\d.]+:(\d+)", data_dir / "stderr.log")
    banner = []
    assert process.stdout is not None
    for line in process.stdout:
        banner.append(line)
        if "root-token" in line:
            break
    return ManagerProcess(process, int(match.group(1)), data_dir, "".join(banner))


PASSWORD_RE = re.compile(r"created user root with password (\S+)")


def start_stack(root: Path, *manager_args: str) -> tuple[ManagerProcess, Cluster, int]:
    """A manager and a scheduler that registered itself in a new cluster; its ID."""
    cluster = Cluster(root / "cluster")
    manager = start_manager(root / "manager", *manager_args)
    try:
        token = manager.root_token
        _, made = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "one"}, token)
        scheduler = cluster.start_scheduler(
            0, "--manager", manager.url, "--cluster-id", str(made["id"]),
            "--manager-token", token, "--advertise-ip", "127.0.0.1",
        )  # fmt: skip

        def registered() -> bool:
            listed = manager.call("GET", "/api/v1/schedulers", token=token)[1]
            return [s["port"] for s in listed] == [scheduler.port]

        if not wait_for(registered):
            raise RuntimeError("the scheduler did not register with the manager")
    except BaseException:
        manager.stop()
        cluster.close()
        raise
    return manager, cluster, made["id"]
