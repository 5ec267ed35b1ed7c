"""The daemon's side of the scheduler API.

A scheduler that is down must not fail downloads that can go on without it: calls
return None when it cannot be reached, and the caller keeps its current parents or
goes back to source.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from damselfly.logs import EventLog
from damselfly.protocol.scheduler import Announcement, AnnounceReply, HostInfo

_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)


class SchedulerClient:
    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, host: HostInfo, log: EventLog
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.host = host
        self.log = log
        self.reachable = True

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        try:
            async with self.session.request(
                method, self.base_url + path, json=body, timeout=_TIMEOUT
            ) as resp:
                data = await resp.json() if resp.content_type == "application/json" else None
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            if self.reachable:
                self.log.warning("scheduler unreachable", scheduler=self.base_url, error=str(exc))
            self.reachable = False
            return None
        if not self.reachable:
            self.log.info("scheduler reachable again", scheduler=self.base_url)
        self.reachable = True
        return status, data

    async def register(self, host: HostInfo | None = None) -> bool | None:
        """Register or heartbeat; True when the scheduler did not know this host."""
        if host is not None:
            self.host = host
        answer = await self._call("POST", "/api/v1/hosts", self.host.to_json())
        if answer is None or answer[0] != 200:
            return None
        return bool(answer[1].get("new"))

    async def leave(self) -> None:
        await self._call("DELETE", f"/api/v1/hosts/{self.host.id}")

    async def announce(self, a: Announcement) -> AnnounceReply | None:
        path = f"/api/v1/tasks/{a.task_id}/announce"
        answer = await self._call("POST", path, a.to_json())
        if answer is not None and answer[0] == 404:
            # the scheduler restarted and lost us: register, then say it again
            await self.register()
            answer = await self._call("POST", path, a.to_json())
        if answer is None:
            return None
        status, data = answer
        if status != 200:
            self.log.warning(
                "announce refused", task_id=a.task_id, status=status, error=str(data)[:300]
            )
            return None
        return AnnounceReply.from_json(data)

    async def leave_task(self, task_id: str) -> None:
        await self._call("DELETE", f"/api/v1/tasks/{task_id}/hosts/{self.host.id}")
