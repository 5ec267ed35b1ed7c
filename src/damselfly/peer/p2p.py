"""One download's dealings with the swarm: the scheduler, its parents, and the
upload server's view of the pieces it has so far.

`PeerToPeer` is the daemon-wide part (scheduler client, HTTP session, the pool that
fetches from parents, the active-task registry); `TaskSession` is per download.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import aiohttp

from damselfly.errors import DamselflyError
from damselfly.logs import EventLog
from damselfly.peer.active import ActiveTask, ActiveTasks
from damselfly.peer.piece_client import PieceClient
from damselfly.peer.request import DownloadRequest, Progress, request_to_json
from damselfly.peer.scheduler_client import SchedulerClient
from damselfly.peer.swarm import Swarm
from damselfly.pieces import PieceLayout
from damselfly.protocol.pieces import PieceList
from damselfly.protocol.scheduler import Announcement, AnnounceReply, ParentInfo, PeerState
from damselfly.storage import PieceRecord

_REPORT_EVERY = 1.0
_META_WAIT = 30.0  # how long to wait for a parent (a seed just told) to learn the length


@dataclass(eq=False)
class PeerToPeer:
    scheduler: SchedulerClient | None
    session: aiohttp.ClientSession
    active: ActiveTasks
    log: EventLog
    concurrency: int
    connect_timeout: float = 3.0
    read_timeout: float = 15.0

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(
            max_workers=self.concurrency * 4, thread_name_prefix="damselfly-parent"
        )

    def parent_client(self) -> PieceClient:
        """A client for piece bytes from parents: no retries here, the swarm moves on."""
        return PieceClient(connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class TaskSession:
    def __init__(
        self, p2p: PeerToPeer, request: DownloadRequest, task_id: str, peer_id: str
    ) -> None:
        self.p2p = p2p
        self.request = request
        self.task_id = task_id
        self.peer_id = peer_id
        self.listed: PieceList | None = None
        self.active: ActiveTask | None = None
        self.finished = 0  # bitmap of finished pieces, for the scheduler
        self._swarm: Swarm | None = None
        self._guard = threading.Lock()

    def _announcement(
        self, state: PeerState, *, need_parents: bool = False, bad: list[str] | None = None
    ) -> Announcement:
        listed = self.listed
        total = None
        if listed and listed.content_length is not None and listed.piece_length:
            total = PieceLayout(listed.content_length, listed.piece_length).count
        r = self.request
        return Announcement(
            task_id=self.task_id,
            host_id=self.p2p.scheduler.host.id if self.p2p.scheduler else "",
            peer_id=self.peer_id,
            url=r.url,
            state=state,
            tag=r.tag,
            application=r.application,
            piece_length=listed.piece_length if listed else r.piece_length,
            content_length=listed.content_length if listed else None,
            total_pieces=total,
            finished=self.finished,
            need_parents=need_parents,
            bad_parents=tuple(bad or ()),
            # a seed told to fetch the task must reach the origin whatever this get said
            request=request_to_json(replace(r, timeout=None, disable_back_to_source=False)),
        )

    async def announce(
        self, state: PeerState, *, need_parents: bool = False, bad: list[str] | None = None
    ) -> AnnounceReply | None:
        if self.p2p.scheduler is None:
            return None
        with self._guard:
            a = self._announcement(state, need_parents=need_parents, bad=bad)
        return await self.p2p.scheduler.announce(a)

    async def find_parents(self) -> list[ParentInfo]:
        """Parents to fetch from; empty means go to the source."""
        reply = await self.announce(PeerState.RUNNING, need_parents=True)
        if reply is None or reply.back_to_source:
            return []
        return reply.parents

    async def meta(self, parents: list[ParentInfo]) -> PieceList | None:
        """The task's length and piece length from the first parent that knows them."""
        timeout = aiohttp.ClientTimeout(total=_META_WAIT + 5, connect=3)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _META_WAIT

        async def ask(parent: ParentInfo) -> PieceList | None:
            url = f"http://{parent.ip}:{parent.port}/api/v1/tasks/{self.task_id}/pieces"
            while loop.time() < deadline:
                wait = max(0.1, min(5.0, deadline - loop.time()))
                try:
                    async with self.p2p.session.get(
                        url, params={"since": "0", "wait": f"{wait:.1f}"}, timeout=timeout
                    ) as resp:
                        if resp.status == 404:  # a seed told to fetch may not have begun
                            await asyncio.sleep(0.1)
                            continue
                        resp.raise_for_status()
                        listed = PieceList.from_json(await resp.json())
                except (aiohttp.ClientError, TimeoutError, DamselflyError):
                    return None
                if listed.state == "failed":
                    return None
                if listed.content_length is not None and listed.piece_length:
                    return listed
            return None

        asks = [asyncio.create_task(ask(p)) for p in parents]
        try:
            for next_done in asyncio.as_completed(asks):
                listed = await next_done
                if listed is not None:
                    return listed
            return None
        finally:
            for task in asks:
                task.cancel()
            await asyncio.gather(*asks, return_exceptions=True)

    def begin(self, listed: PieceList, finished: dict[int, PieceRecord]) -> None:
        """Make the pieces we have visible to children and the scheduler."""
        self.listed = listed
        listed.pieces = {n: r.crc32 for n, r in finished.items()}
        self.finished = sum(1 << n for n in finished)
        self.active = self.p2p.active.begin(listed)

    def on_piece(self, record: PieceRecord) -> None:
        """From any thread: a piece is written and verified."""
        with self._guard:
            self.finished |= 1 << record.number
        if self.active is not None:
            self.p2p.active.add_from_thread(self.active, record)

    def swarm(
        self,
        layout: PieceLayout,
        fd: int,
        progress: Progress,
        on_piece: Callable[[PieceRecord], None],
        storage_error: Callable[[OSError], Exception],
    ) -> Swarm:
        """Fetches from parents; `on_piece` must also reach `self.on_piece`."""
        assert self.listed is not None
        self._swarm = Swarm(
            task_id=self.task_id,
            peer_id=self.peer_id,
            layout=layout,
            piece_list=self.listed,
            fd=fd,
            progress=progress,
            on_piece=on_piece,
            session=self.p2p.session,
            source=self.p2p.parent_client(),
            executor=self.p2p.executor,
            concurrency=self.p2p.concurrency,
            refresh=lambda bad: self.announce(PeerState.RUNNING, need_parents=True, bad=bad),
            log=self.p2p.log,
            storage_error=storage_error,
        )
        return self._swarm

    async def report_loop(self) -> None:
        """Tell the scheduler our finished pieces as they grow."""
        while True:
            await asyncio.sleep(_REPORT_EVERY)
            with contextlib.suppress(DamselflyError):
                await self.announce(PeerState.RUNNING)

    async def end(self, state: PeerState) -> None:
        """Final word to the scheduler, with the bad parents not yet reported."""
        if self.active is not None:
            self.p2p.active.end(self.active, state.value)
        bad = self._swarm.bad if self._swarm is not None else []
        with contextlib.suppress(DamselflyError):
            await self.announce(state, bad=bad)
