"""The CLI's client for the manager API: JSON over urllib3, errors as one line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3

from damselfly.errors import DamselflyError, RemoteError

DEFAULT_MANAGER = "http://127.0.0.1:8080"


def find_token(token: str | None, data_dir: Path) -> str:
    """--token, else $DAMSELFLY_TOKEN, else root's token file of a local manager."""
    if token:
        return token
    if os.environ.get("DAMSELFLY_TOKEN"):
        return os.environ["DAMSELFLY_TOKEN"]
    path = data_dir / "manager" / "root-token"
    try:
        return path.read_text().strip()
    except OSError:
        raise DamselflyError(
            f"no API token: pass --token, set DAMSELFLY_TOKEN, or run where {path} is readable"
        ) from None


class ManagerClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60), retries=False)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self.http.request(
                method,
                self.base_url + path,
                body=json.dumps(body).encode() if body is not None else None,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                },
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DamselflyError(
                f"cannot reach the manager at {self.base_url} ({exc}); is `damselfly serve` "
                "or `damselfly manager` running? (--manager to choose)"
            ) from None
        try:
            data = json.loads(resp.data) if resp.data else None
        except json.JSONDecodeError:
            data = {"message": resp.data[:300].decode(errors="replace")}
        if resp.status >= 400:
            data = data if isinstance(data, dict) else {}
            raise RemoteError(
                str(data.get("code") or f"HTTP{resp.status}"),
                f"the manager refused: {data.get('message') or resp.status}",
            )
        return data

    def wait_job(
        self, job: dict[str, Any], on_update: Callable[[dict[str, Any]], None], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while job["state"] == "PENDING":
            if time.monotonic() > deadline:
                raise DamselflyError(
                    f"job {job['id']} is still running after {timeout:g}s; see it later with "
                    f"`damselfly jobs show {job['id']}`"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            job = self.call("GET", f"/api/v1/jobs/{job['id']}")
            on_update(job)
        return job

    def upload(self, path: str, source: Path, on_bytes: Callable[[int], None]) -> Any:
        """PUT a local file as the request body, in chunks; the JSON answer."""

        def chunks() -> Any:
            with source.open("rb") as f:
                while chunk := f.read(1 << 20):
                    on_bytes(len(chunk))
                    yield chunk

        return self._raw(
            "PUT",
            path,
            body=chunks(),
            headers={"Content-Length": str(source.stat().st_size)},
            json_answer=True,
        )

    def download(self, path: str, target: Path, on_bytes: Callable[[int], None]) -> None:
        """GET into `target`, written under a temporary name and renamed when whole."""
        partial = target.with_name(f".{target.name}.part")
        resp = self._raw("GET", path, preload=False)
        try:
            with partial.open("wb") as out:
                for chunk in resp.stream(1 << 20):
                    out.write(chunk)
                    on_bytes(len(chunk))
            partial.replace(target)
        finally:
            resp.release_conn()
            partial.unlink(missing_ok=True)

    def _raw(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict | None = None,
        preload: bool = True,
        json_answer: bool = False,
    ) -> Any:
        try:
            resp = self.http.request(
                method,
                self.base_url + path,
                body=body,
                preload_content=preload,
                headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
                timeout=urllib3.Timeout(connect=5, read=300),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DamselflyError(
                f"cannot reach the manager at {self.base_url} ({exc}); is it running?"
            ) from None
        if resp.status >= 400:
            raw = resp.data if preload else resp.read()
            try:
                data = json.loads(raw)
            except (ValueError, TypeError):
                data = {}
            data = data if isinstance(data, dict) else {}
            raise RemoteError(
                str(data.get("code") or f"HTTP{resp.status}"),
                f"the manager refused: {data.get('message') or resp.status}",
            )
        return json.loads(resp.data) if json_answer else resp
