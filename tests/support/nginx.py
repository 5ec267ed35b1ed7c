"""A real nginx origin on 127.0.0.1 for tests and benchmarks (Debian's nginx)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop

CONF = """
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format bytes '$request_uri $status $body_bytes_sent $connection';
  access_log {prefix}/access.log bytes;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    {limit}
  }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Nginx:
    prefix: Path
    root: Path
    port: int
    process: subprocess.Popen

    @classmethod
    def start(cls, prefix: Path, *, limit_rate: str | None = None) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            import pytest

            pytest.skip("nginx is not installed (./dev test installs it with apt-get)")
        root = prefix / "root"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        root.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        limit = f"limit_rate {limit_rate};" if limit_rate else ""
        conf = prefix / "nginx.conf"
        # As root, nginx's workers would drop to www-data and not read private temp dirs.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(CONF.format(user=user, prefix=prefix, port=port, root=root, limit=limit))
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(prefix)], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return cls(prefix, root, port, process)
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"nginx failed: {process.stderr.read()!r}") from None
                time.sleep(0.05)
        process.kill()
        raise RuntimeError("nginx did not start listening within 10 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _log(self) -> list[tuple[str, int, int, int]]:
        """(uri, status, body bytes, connection serial) per request served."""
        log = self.prefix / "access.log"
        if not log.exists():
            return []
        rows = []
        for line in log.read_text().splitlines():
            uri, status, sent, connection = line.rsplit(" ", 3)
            rows.append((uri, int(status), int(sent), int(connection)))
        return rows

    def bytes_sent(self, path: str) -> int:
        return sum(sent for uri, _, sent, _ in self._log() if uri == path)

    def connections(self, path: str) -> tuple[int, int]:
        """(requests, distinct TCP connections they came on) for `path`."""
        serials = [connection for uri, _, _, connection in self._log() if uri == path]
        return len(serials), len(set(serials))

    def stop(self) -> None:
        stop(self.process, grace=10)
