"""Running a scheduler's HTTP server (alone, or inside `damselfly serve`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from damselfly.logs import EventLog
from damselfly.scheduler.api import build_app
from damselfly.scheduler.selection import SelectionPolicy
from damselfly.scheduler.service import Scheduler
from damselfly.settings import SchedulerSettings

_REGISTER_EVERY = 30.0


@dataclass
class RunningScheduler:
    runner: web.AppRunner
    port: int
    log: EventLog
    registering: asyncio.Task | None = None

    async def stop(self) -> None:
        if self.registering is not None:
            self.registering.cancel()
            await asyncio.gather(self.registering, return_exceptions=True)
        await self.runner.cleanup()
        self.log.info("scheduler stopped")
        self.log.close()


async def start_scheduler(settings: SchedulerSettings) -> RunningScheduler:
    log = EventLog(settings.log_dir, "scheduler")
    policy = SelectionPolicy(
        max_parents=settings.max_parents,
        candidate_sample=settings.candidate_sample,
        host_ttl=settings.host_ttl,
    )
    runner = web.AppRunner(build_app(Scheduler(policy), log), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.listen, settings.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        log.close()
        raise
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log.info("scheduler started", listen=settings.listen, port=port)
    running = RunningScheduler(runner, port, log)
    if settings.manager:
        running.registering = asyncio.create_task(_register_loop(settings, port, log))
    return running


async def _register_loop(settings: SchedulerSettings, port: int, log: EventLog) -> None:
    """Join the manager's cluster now and again every 30 s (last_seen, or after the
    manager lost us); failures are logged once and retried."""
    assert settings.manager is not None
    body = {
        "cluster_id": settings.cluster_id,
        "hostname": settings.hostname,
        "ip": settings.advertise_ip,
        "port": port,
    }
    headers = {"Authorization": f"Bearer {settings.manager_token}"}
    url = settings.manager.rstrip("/") + "/api/v1/schedulers"
    failing = False
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.post(
                    url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                if failing:
                    log.info("registered with manager again", manager=settings.manager)
                failing = False
            except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
                if not failing:
                    log.warning(
                        "cannot register with manager", manager=settings.manager, error=str(exc)
                    )
                failing = True
            await asyncio.sleep(_REGISTER_EVERY if not failing else 2.0)
