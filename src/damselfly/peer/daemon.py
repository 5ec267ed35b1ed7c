"""`damselfly peer`: the long-running peer on a host.

It owns the host's store, serves pieces to other peers (upload server, TCP), takes
downloads from local `damselfly get`s (local API, unix socket), registers and
heartbeats with the scheduler, and re-announces what it holds whenever the
scheduler has forgotten it (a scheduler restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from damselfly import ids
from damselfly.errors import Conflict, NotFound
from damselfly.logs import EventLog
from damselfly.peer.active import ActiveTasks
from damselfly.peer.download import Downloader
from damselfly.peer.p2p import PeerToPeer
from damselfly.peer.ratelimit import RateLimit
from damselfly.peer.request import DownloadRequest, DownloadResult, Progress
from damselfly.peer.scheduler_client import SchedulerClient
from damselfly.pieces import PieceLayout
from damselfly.protocol.pieces import PieceList
from damselfly.protocol.scheduler import Announcement, HostInfo, HostType, PeerState
from damselfly.settings import PeerSettings
from damselfly.storage import Store, TaskState
from damselfly.storage.gc import collect


def _answers(path: Path) -> bool:
    """Is a live process listening on this unix socket?"""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@dataclass(eq=False)
class Inflight:
    """A download the daemon is running; later requests for the task share it."""

    future: asyncio.Future[DownloadResult]
    progress: Progress
    started: float = field(default_factory=time.time)


class Daemon:
    def __init__(self, settings: PeerSettings) -> None:
        self.settings = settings
        self.host_id = ids.host_id(settings.ip, settings.hostname, seed=settings.seed)
        self.store = Store(settings.data_dir)
        self.log = EventLog(settings.log_dir, "peer")
        self.inflight: dict[str, Inflight] = {}
        # why recent downloads failed, for the task API (a preheat asks after them)
        self.failures: dict[str, str] = {}
        self.upload_port = settings.upload_port
        self.uploading = 0  # pieces being sent right now
        self.upload_rate = RateLimit(settings.upload_rate)
        self._runners: list[web.AppRunner] = []
        self._background: set[asyncio.Task] = set()
        self._stopped = asyncio.Event()

    # lifecycle

    async def start(self) -> None:
        from damselfly.peer.local_api import build_local_app
        from damselfly.peer.upload import build_upload_app

        loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession()
        self.active = ActiveTasks(loop)
        upload = web.AppRunner(build_upload_app(self), access_log=None)
        await upload.setup()
        site = web.TCPSite(upload, self.settings.listen, self.settings.upload_port)
        await site.start()
        self._runners.append(upload)
        self.upload_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.scheduler = None
        if self.settings.scheduler:
            self.scheduler = SchedulerClient(
                self.settings.scheduler, self.session, self.host_info(), self.log
            )
        p2p = PeerToPeer(
            self.scheduler, self.session, self.active, self.log, self.settings.concurrency
        )
        self.p2p = p2p
        self.downloader = Downloader(self.store, self.settings, self.log, p2p)
        socket_path = self.settings.socket_path
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        if _answers(socket_path):
            raise Conflict(
                f"a peer daemon already runs at {socket_path}; stop it, or give this one "
                "its own --data-dir or --endpoint"
            )
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()  # a stale socket from a killed daemon
        local = web.AppRunner(build_local_app(self), access_log=None)
        await local.setup()
        await web.UnixSite(local, str(socket_path)).start()
        socket_path.chmod(0o600)
        self._runners.append(local)
        self._spawn(self._heartbeat_loop())
        self._spawn(self._gc_loop())
        self.log.info(
            "peer started",
            host_id=self.host_id,
            ip=self.settings.ip,
            upload_port=self.upload_port,
            endpoint=str(socket_path),
            scheduler=self.settings.scheduler or "",
            type=self.host_type().value,
        )

    async def stop(self) -> None:
        """Clean shutdown: leave the scheduler first so nobody is sent here any more."""
        if self.scheduler is not None:
            await self.scheduler.leave()
        for task in list(self._background):
            task.cancel()
        for entry in list(self.inflight.values()):
            entry.future.cancel()
        await asyncio.gather(
            *self._background, *(e.future for e in self.inflight.values()), return_exceptions=True
        )
        for runner in reversed(self._runners):
            await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket_path.unlink()
        await self.session.close()
        self.p2p.close()
        self.log.info("peer stopped", host_id=self.host_id)
        self.log.close()
        self.store.close()

    async def serve_forever(self, ready: Any = None) -> None:
        try:
            await self.start()
        except BaseException:
            await self._abandon_start()
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopped.set)
        if ready is not None:
            ready(self)
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    async def _abandon_start(self) -> None:
        """Undo a start that failed half-way (a port in use), quietly."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        if hasattr(self, "session"):
            await self.session.close()
        self.log.close()
        self.store.close()

    def host_type(self) -> HostType:
        return HostType.SUPER if self.settings.seed else HostType.NORMAL

    def host_info(self) -> HostInfo:
        free = self.settings.upload_slots - self.uploading
        return HostInfo(
            id=self.host_id,
            hostname=self.settings.hostname,
            ip=self.settings.ip,
            port=self.settings.advertise_port or self.upload_port,
            type=self.host_type(),
            upload_slots=self.settings.upload_slots,
            free_upload_slots=free,
        )

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _heartbeat_loop(self) -> None:
        if self.scheduler is None:
            return
        while True:
            new = await self.scheduler.register(self.host_info())
            if new:
                await self._announce_stored()
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _announce_stored(self) -> None:
        """Tell a scheduler that just met us every task we hold."""
        assert self.scheduler is not None
        records = [r for r in self.store.metadata.tasks() if r.state is TaskState.SUCCEEDED]
        for record in records:
            total = PieceLayout(record.content_length or 0, record.piece_length).count
            await self.scheduler.announce(
                Announcement(
                    task_id=record.id,
                    host_id=self.host_id,
                    peer_id=ids.peer_id(
                        self.settings.ip, self.settings.hostname, seed=self.settings.seed
                    ),
                    url=record.url,
                    state=PeerState.SUCCEEDED,
                    tag=record.tag,
                    application=record.application,
                    piece_length=record.piece_length,
                    content_length=record.content_length,
                    total_pieces=total,
                    finished=(1 << total) - 1,
                )
            )
        self.log.info("tasks announced to scheduler", tasks=len(records))

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gc_interval)
            await self.collect_garbage()

    async def collect_garbage(self, free_at_least: int = 0) -> None:
        report = await asyncio.to_thread(
            collect, self.store, self.downloader.gc_policy, free_at_least=free_at_least
        )
        for task_id in report.evicted:
            self.log.info("task evicted", task_id=task_id, host_id=self.host_id)
            if self.scheduler is not None:
                await self.scheduler.leave_task(task_id)

    # downloads

    def download(self, request: DownloadRequest) -> Inflight:
        """Start (or join) the download of a task; it runs to the end even if the
        `get` that asked goes away, so the next asker finds it done."""
        task_id = ids.task_id(request.identity())
        entry = self.inflight.get(task_id)
        if entry is not None:
            return entry
        progress = Progress()
        future = asyncio.ensure_future(self.downloader.download(request, progress))
        entry = Inflight(future, progress)
        self.inflight[task_id] = entry

        def done(f: asyncio.Future) -> None:
            if self.inflight.get(task_id) is entry:
                del self.inflight[task_id]
            exc = None if f.cancelled() else f.exception()
            if exc is not None:  # reported to whoever waits; also kept for the task API
                self.failures[task_id] = str(exc)
                while len(self.failures) > 1000:
                    del self.failures[next(iter(self.failures))]
            else:
                self.failures.pop(task_id, None)

        future.add_done_callback(done)
        return entry

    # the task API (manager's jobs, scheduler's fan-out, local CLI)

    def piece_list(self, task_id: str) -> PieceList | None:
        active = self.active.get(task_id)
        if active is not None:
            return active.pieces
        record = self.store.metadata.get_task(task_id)
        if record is None or record.state is not TaskState.SUCCEEDED:
            return None
        pieces = self.store.metadata.pieces(task_id)
        return PieceList(
            task_id,
            "succeeded",
            record.content_length,
            record.piece_length,
            record.source_etag,
            record.source_last_modified,
            {n: p.crc32 for n, p in pieces.items()},
        )

    def stat(self, task_id: str) -> dict[str, Any]:
        record = self.store.metadata.get_task(task_id)
        if record is None and task_id in self.failures and task_id not in self.inflight:
            return {"task_id": task_id, "host_id": self.host_id, "state": "failed",
                    "error": self.failures[task_id]}  # fmt: skip
        if record is None:
            raise NotFound(f"task {task_id} is not on host {self.host_id}")
        finished = len(self.store.metadata.pieces(task_id))
        total = None
        if record.content_length is not None:
            total = PieceLayout(record.content_length, record.piece_length).count
        state = record.state.value.lower()
        if record.state is TaskState.RUNNING and task_id not in self.inflight:
            state = "interrupted"  # a killed download: the next get resumes it
        return {
            "task_id": task_id,
            "host_id": self.host_id,
            "hostname": self.settings.hostname,
            "ip": self.settings.ip,
            "host_type": self.host_type().value,
            "state": state,
            "url": record.url,
            "tag": record.tag,
            "application": record.application,
            "piece_length": record.piece_length,
            "content_length": record.content_length,
            "finished_pieces": finished,
            "total_pieces": total,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "accessed_at": record.accessed_at,
            "error": record.error if record.state is TaskState.FAILED else "",
        }

    async def delete(self, task_id: str) -> int:
        """Remove a task's content and metadata here and tell the scheduler; bytes freed."""
        if task_id in self.inflight:
            raise Conflict(
                f"task {task_id} is being downloaded on host {self.host_id}; "
                "delete it after the download ends"
            )
        if self.store.metadata.get_task(task_id) is None:
            raise NotFound(f"task {task_id} is not on host {self.host_id}")
        lock = self.store.lock(task_id)
        if not lock.acquire(blocking=False):
            raise Conflict(
                f"task {task_id} is being downloaded by another process on host "
                f"{self.host_id}; delete it after the download ends"
            )
        try:
            freed = self.store.delete(task_id)
        finally:
            lock.release(unlink=True)
        if self.scheduler is not None:
            await self.scheduler.leave_task(task_id)
        self.log.info("task deleted", task_id=task_id, host_id=self.host_id, freed_bytes=freed)
        return freed
