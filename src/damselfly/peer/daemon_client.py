"""`damselfly get`'s side of the local API: HTTP over the daemon's unix socket.

Blocking and stdlib-only (http.client), so a `get` that goes through the daemon
starts as fast as one that does not.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from damselfly.errors import DamselflyError, DownloadTimeout, RemoteError
from damselfly.peer.request import (
    DownloadRequest,
    DownloadResult,
    request_to_json,
    result_from_json,
)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DaemonUnavailable(DamselflyError):
    code = "PeerUnavailable"


class DaemonClient:
    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    def available(self) -> bool:
        """True if a daemon answers on the socket (a stale socket file does not count)."""
        if not self.path.exists():
            return False
        try:
            status, _ = self.call("GET", "/healthz")
        except DaemonUnavailable:
            return False
        return status == 200

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            raise DaemonUnavailable(
                f"the peer daemon at {self.path} did not answer ({exc}); is `damselfly peer` "
                "running? Without --endpoint, get works alone"
            ) from None
        finally:
            conn.close()

    def download(
        self, request: DownloadRequest, on_progress: Callable[[dict[str, Any]], None]
    ) -> DownloadResult:
        """Ask the daemon to download; progress lines go to `on_progress`. With a
        timeout we stop waiting; the daemon finishes the task for the next asker."""
        deadline = time.monotonic() + request.timeout if request.timeout else None
        conn = _UnixConnection(self.path, self.timeout)
        try:
            try:
                conn.request(
                    "POST",
                    "/api/v1/downloads",
                    # the timeout is ours to keep; the daemon's download outlives it
                    body=json.dumps(request_to_json(replace(request, timeout=None))).encode(),
                    headers={"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
            except OSError as exc:
                raise DaemonUnavailable(
                    f"the peer daemon at {self.path} did not answer ({exc}); is `damselfly "
                    "peer` running?"
                ) from None
            if resp.status != 200:
                raise _remote_error(json.loads(resp.read() or b"{}"))
            for raw in resp:
                line = json.loads(raw)
                if deadline is not None and time.monotonic() > deadline:
                    raise DownloadTimeout(
                        f"download of {request.url} timed out after {request.timeout:g}s; the "
                        "peer daemon goes on with it, so the same command later finds it done"
                    )
                if "progress" in line:
                    on_progress(line["progress"])
                elif "error" in line:
                    raise _remote_error(line["error"])
                elif "result" in line:
                    return result_from_json(line["result"])
            raise DaemonUnavailable(
                f"the peer daemon at {self.path} ended the download without a result; "
                "see its log (peer.log) and run the same command again"
            )
        finally:
            conn.close()


def _remote_error(data: dict[str, Any]) -> RemoteError:
    return RemoteError(
        str(data.get("code") or "InternalError"),
        str(data.get("message") or "the peer daemon refused the request"),
        int(data.get("exit_code") or 1),
        [str(d) for d in data.get("details") or []],
    )
