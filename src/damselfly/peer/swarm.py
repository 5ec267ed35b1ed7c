"""Pieces of one task from several parents at once.

The event loop decides; worker threads move bytes. For each parent a watcher
long-polls its piece list, so a piece can be taken from a parent that is still
downloading the moment it lands there. Requests in flight start at 2 and double
while that raises throughput, up to `concurrency` (`ramp`); pieces go rarest first
among the parents we know, each from the least busy parent holding
it. Every piece is checked against the CRC-32 its parent advertised; a parent
that serves corrupt bytes or stops answering is dropped for this task and reported
to the scheduler, which hands out others. What no parent can give is returned to
the caller, which fetches it from the source.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import aiohttp

from damselfly.errors import DamselflyError, SourceError, StorageFull
from damselfly.logs import EventLog
from damselfly.peer.piece_client import PieceClient
from damselfly.peer.ramp import Ramp
from damselfly.peer.request import Progress
from damselfly.pieces import Piece, PieceLayout, crc32
from damselfly.protocol.pieces import PieceList, download_path
from damselfly.protocol.scheduler import AnnounceReply, ParentInfo
from damselfly.storage import PieceRecord

# One receive buffer per request in flight, from a pool (so at most `concurrency` per
# download). 4 MiB, a whole default piece: a child took its parents' bytes at a median
# 1.15 GB/s against 0.96 with 1 MiB (16 rounds each, alternating, into tmpfs).
READ_BUFFER = 4 * 1024 * 1024
# Consecutive pieces a parent holds go in one request of up to this many bytes: per
# request costs (a round trip, the parent opening the file) cost a third of the
# throughput at 4 MiB. Pieces are still verified and shown to children one by one.
# Runs are shorter when what is missing would not fill `concurrency` of them, so the
# ramp has requests to add when a far parent needs more in flight.
RUN_BYTES = 64 * 1024 * 1024
_REFRESH_EVERY = 1.0  # ask the scheduler for fresh parents this often
_POLL_WAIT = 5.0  # long-poll a parent's piece list this long
_PARENT_STALL = 30.0  # a parent whose list has not grown this long is dropped
_MAX_FAILURES = 2  # failed piece fetches in a row before a parent is dropped
_BUSY_BACKOFF = 0.2  # seconds a parent with no free upload slot is left alone


class CorruptPiece(Exception):
    pass


@dataclass(eq=False)
class ParentLink:
    info: ParentInfo
    base_url: str
    pieces: dict[int, int] = field(default_factory=dict)
    epoch: str = ""  # of the parent's piece order that `pieces` follows
    state: str = "running"
    inflight: int = 0  # pieces being fetched from it
    busy_until: float = 0.0  # it answered 503 (every upload slot taken): not before then
    failures: int = 0
    dead: bool = False
    grew_at: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task | None = None


# a request in flight -> the consecutive pieces it fetches and from whom
Inflight = dict[asyncio.Future, tuple[list[Piece], ParentLink]]
# (bad parent host IDs to report) -> the scheduler's answer, or None when unreachable
Refresh = Callable[[list[str]], Awaitable[AnnounceReply | None]]


class Swarm:
    def __init__(
        self,
        *,
        task_id: str,
        peer_id: str,
        layout: PieceLayout,
        piece_list: PieceList,
        fd: int,
        progress: Progress,
        on_piece: Callable[[PieceRecord], None],
        session: aiohttp.ClientSession,
        source: PieceClient,
        executor: Executor,
        concurrency: int,
        refresh: Refresh,
        log: EventLog,
        storage_error: Callable[[OSError], Exception],
    ) -> None:
        self.task_id = task_id
        self.peer_id = peer_id
        self.layout = layout
        self.expected = piece_list  # the task's length and piece length every parent must match
        self.fd = fd
        self.progress = progress
        self.on_piece = on_piece
        self.session = session
        self.source = source
        self.executor = executor
        # requests in flight: start low, more while more raise throughput
        self.ramp = Ramp(concurrency)
        self.refresh = refresh
        self.log = log
        self.storage_error = storage_error
        self.links: dict[str, ParentLink] = {}
        self.bad: list[str] = []  # host IDs not yet reported to the scheduler
        self.peer_bytes = 0
        self._changed = asyncio.Event()
        self._buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        # see FetchJob.write_lock: sleeping here beats spinning on the inode lock
        self._write_lock = threading.Lock()
        self._landed: set[int] = set()  # pieces verified by worker threads

    async def run(self, parents: list[ParentInfo], finished: set[int]) -> list[Piece]:
        """Fetch every piece not in `finished`; the pieces left for the source."""
        missing = {p.number: p for p in self.layout.pieces() if p.number not in finished}
        inflight: Inflight = {}
        self._add(parents)
        last_refresh = time.monotonic()
        to_source = False
        self.ramp.observe(time.monotonic(), self.progress.peer_bytes)
        try:
            while missing:
                self._dispatch(missing, inflight)
                now = time.monotonic()
                starving = not inflight
                if starving or now - last_refresh >= _REFRESH_EVERY:
                    last_refresh = now
                    to_source = await self._refresh()
                    self._dispatch(missing, inflight)
                    if to_source and not inflight:
                        break
                self._drop_stalled(now)
                if not inflight and self._hopeless(missing):
                    to_source = True
                    break
                busy = any(link.busy_until > now for link in self._live())
                timeout = min(_BUSY_BACKOFF if busy else _REFRESH_EVERY, self.ramp.window)
                await self._wait(inflight, timeout=timeout)
                self._collect(inflight, missing)
                self._adjust()
        finally:
            await self._stop(inflight)
        if to_source and missing:
            self.log.info(
                "no parent for the remaining pieces, back to source",
                task_id=self.task_id,
                peer_id=self.peer_id,
                pieces=len(missing),
            )
        return sorted(missing.values(), key=lambda p: p.number)

    # parents

    def _add(self, parents: list[ParentInfo]) -> None:
        for info in parents:
            if info.host_id in self.links or info.host_id in self.bad:
                continue
            link = ParentLink(info, f"http://{info.ip}:{info.port}")
            link.watcher = asyncio.create_task(self._watch(link))
            self.links[info.host_id] = link

    def _live(self) -> list[ParentLink]:
        return [link for link in self.links.values() if not link.dead]

    def _drop(self, link: ParentLink, reason: str) -> None:
        if link.dead:
            return
        link.dead = True
        self.bad.append(link.info.host_id)
        self._changed.set()
        self.log.warning(
            "parent dropped",
            task_id=self.task_id,
            peer_id=self.peer_id,
            parent=link.info.host_id,
            reason=reason,
        )

    def _hopeless(self, missing: dict[int, Piece]) -> bool:
        """No live parent has a missing piece, and none is still fetching more."""
        return not any(
            link.state == "running" or any(n in link.pieces for n in missing)
            for link in self._live()
        )

    def _drop_stalled(self, now: float) -> None:
        for link in self._live():
            idle = link.inflight == 0 and now - link.grew_at > _PARENT_STALL
            if link.state == "running" and idle:
                self._drop(link, f"no new piece for {_PARENT_STALL:g}s")

    async def _refresh(self) -> bool:
        """Ask the scheduler for parents; True when it sends us back to source."""
        reported, self.bad = self.bad, []
        reply = await self.refresh(reported)
        if reply is None:  # scheduler down: carry on with whom we have
            return not self._live()
        self._add(reply.parents)
        return reply.back_to_source and not self._live()

    async def _watch(self, link: ParentLink) -> None:
        url = f"{link.base_url}/api/v1/tasks/{self.task_id}/pieces"
        timeout = aiohttp.ClientTimeout(total=_POLL_WAIT + 10, connect=3)
        misses = list_failures = 0  # the list's own failures in a row
        while not link.dead:
            params = {
                "since": str(len(link.pieces)),
                "epoch": link.epoch,
                "wait": str(_POLL_WAIT),
            }
            try:
                async with self.session.get(url, params=params, timeout=timeout) as resp:
                    if resp.status == 404:  # a seed told to fetch may not have begun
                        misses += 1
                        if misses > 50:
                            self._drop(link, "it does not have the task")
                            return
                        await asyncio.sleep(0.2)
                        continue
                    resp.raise_for_status()
                    listed = PieceList.from_json(await resp.json(), known=link.pieces)
                    list_failures = 0
            except (aiohttp.ClientError, TimeoutError, DamselflyError) as exc:
                list_failures += 1
                if list_failures > _MAX_FAILURES:
                    self._drop(link, f"piece list failed: {exc}")
                    return
                await asyncio.sleep(0.2)
                continue
            if listed.content_length is not None and (
                listed.content_length != self.expected.content_length
                or listed.piece_length != self.expected.piece_length
            ):
                self._drop(link, "its copy of the task has another length or piece length")
                return
            if len(listed.pieces) > len(link.pieces):
                link.grew_at = time.monotonic()
            link.pieces, link.state, link.epoch = listed.pieces, listed.state, listed.epoch
            self._changed.set()
            if listed.state == "failed":
                self._drop(link, "its download failed")
                return
            if listed.state == "succeeded":
                return

    # pieces

    def _adjust(self) -> None:
        was = self.ramp.target
        wanted = self.ramp.observe(time.monotonic(), self.progress.peer_bytes)
        if wanted != was:
            self.log.info(
                "parent requests changed",
                task_id=self.task_id,
                peer_id=self.peer_id,
                requests=wanted,
                was=was,
                rate=f"{self.ramp.rate / 1e6:.1f}MB/s",
            )

    def _dispatch(self, missing: dict[int, Piece], inflight: Inflight) -> None:
        busy = {piece.number for run, _ in inflight.values() for piece in run}
        live = self._live()
        if not live:
            return
        loop = asyncio.get_running_loop()
        run_pieces = max(
            1,
            min(RUN_BYTES // self.layout.piece_length, -(-len(missing) // self.ramp.maximum)),
        )
        # share out the pieces: a parent whose list has not arrived yet still gets its part
        per_parent = max(2, -(-len(missing) // len(live)))
        while len(inflight) < self.ramp.target:
            now = time.monotonic()
            open_links = [
                link for link in live if link.inflight < per_parent and link.busy_until <= now
            ]
            best: tuple[int, int] | None = None  # (holders, number): rarest, then lowest
            for number in missing:
                if number in busy:
                    continue
                holders = sum(1 for link in open_links if number in link.pieces)
                if holders and (best is None or (holders, number) < best):
                    best = (holders, number)
            if best is None:
                return
            first = missing[best[1]]
            link = min(
                (link for link in open_links if first.number in link.pieces),
                key=lambda link: (link.inflight, link.failures),
            )
            run = [first]
            allowance = min(run_pieces, per_parent - link.inflight)
            while len(run) < allowance:
                after = run[-1].number + 1
                if after not in missing or after in busy or after not in link.pieces:
                    break
                run.append(missing[after])
            expected = [link.pieces[p.number] for p in run]
            future = loop.run_in_executor(self.executor, self._fetch, link, run, expected)
            inflight[future] = (run, link)
            link.inflight += len(run)
            busy.update(p.number for p in run)

    async def _wait(self, inflight: Inflight, timeout: float) -> None:
        self._changed.clear()
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({*inflight, changed}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            changed.cancel()

    def _collect(self, inflight: Inflight, missing: dict[int, Piece]) -> None:
        for future in [f for f in inflight if f.done()]:
            run, link = inflight.pop(future)
            link.inflight -= len(run)
            progressed = False
            for piece in run:  # verified pieces count even when the rest of the run failed
                if piece.number in self._landed:
                    progressed = progressed or piece.number in missing
                    missing.pop(piece.number, None)
            exc = future.exception()
            if exc is None or progressed:
                # a link that broke after delivering is flaky, not dead: only
                # failures in a row count against it
                link.failures = 0
            if exc is None:
                continue
            if isinstance(exc, StorageFull | OSError) and not isinstance(exc, ConnectionError):
                raise exc
            if isinstance(exc, CorruptPiece):
                self._drop(link, str(exc))
                continue
            if isinstance(exc, SourceError) and exc.status == 503:
                # busy, not broken: ask others for a moment
                link.busy_until = time.monotonic() + _BUSY_BACKOFF
                continue
            link.failures += 0 if progressed else 1
            unreachable = isinstance(exc, SourceError) and exc.unreachable
            if unreachable or link.failures >= _MAX_FAILURES:
                self._drop(link, f"pieces {run[0].number}-{run[-1].number} failed: {exc}")

    def _fetch(self, link: ParentLink, run: list[Piece], expected: list[int]) -> None:
        """Blocking: consecutive pieces from one parent, in one request, into the
        content file. Each piece is checked and recorded the moment its last byte
        lands, so children see it at once however long the run."""
        try:
            buffer = self._buffers.get_nowait()
        except queue.Empty:  # fewer than `concurrency` made so far
            buffer = bytearray(READ_BUFFER)
        start = run[0].offset
        length = sum(p.length for p in run)
        done = 0  # pieces of the run verified and recorded
        written = verified = crc = 0

        def sink(view: memoryview) -> None:
            nonlocal written, verified, crc, done
            while view:
                piece = run[done]
                take = min(len(view), piece.offset + piece.length - start - written)
                try:
                    with self._write_lock:
                        n = os.pwrite(self.fd, view[:take], start + written)
                except OSError as exc:
                    raise self.storage_error(exc) from exc
                crc = crc32(view[:n], crc)
                written += n
                self.progress.received(n, from_source=False)
                view = view[n:]
                if written == piece.offset + piece.length - start:
                    if crc != expected[done]:
                        raise CorruptPiece(
                            f"parent {link.info.host_id} served piece {piece.number} with "
                            f"CRC-32 {crc:08x}, expected {expected[done]:08x}"
                        )
                    self.on_piece(
                        PieceRecord(self.task_id, piece.number, piece.offset, piece.length, crc)
                    )
                    self._landed.add(piece.number)
                    done, verified, crc = done + 1, written, 0

        url = f"{link.base_url}{download_path(self.task_id)}?peerId={self.peer_id}"
        began = time.monotonic()
        try:
            self.source.read_range(url, {}, start, length, sink, buffer)
            self.ramp.piece_took(time.monotonic() - began)
        except BaseException:
            self.progress.discard(written - verified)
            raise
        finally:
            self._buffers.put(buffer)

    async def _stop(self, inflight: Inflight) -> None:
        for link in self.links.values():
            if link.watcher is not None:
                link.watcher.cancel()
        if inflight:
            self.source.stop()  # in-flight reads end within one read
            await asyncio.wait(set(inflight))
            for future in inflight:
                future.exception()  # mostly the Stopped we caused; the cause is already raised
            self.source.reset()
        watchers = [link.watcher for link in self.links.values() if link.watcher is not None]
        await asyncio.gather(*watchers, return_exceptions=True)
        self.source.close()
