"""Running a scheduler's HTTP server (alone, or inside `damselfly serve`)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from damselfly.logs import EventLog
from damselfly.scheduler.api import build_app
from damselfly.scheduler.selection import SelectionPolicy
from damselfly.scheduler.service import Scheduler
from damselfly.settings import SchedulerSettings


@dataclass
class RunningScheduler:
    runner: web.AppRunner
    port: int
    log: EventLog

    async def stop(self) -> None:
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
    return RunningScheduler(runner, port, log)
