"""The download engine: cache hits, resume, task state; the byte path is in `fetch`.

A piece is recorded as finished only after all its bytes are written and its CRC-32
computed, so an interrupted task resumes from the recorded pieces (re-verified).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from damselfly import digest as digests
from damselfly import ids
from damselfly.errors import (
    Conflict,
    DamselflyError,
    DigestMismatch,
    DownloadTimeout,
    NotFound,
    StorageFull,
)
from damselfly.logs import EventLog
from damselfly.peer.request import DownloadRequest, DownloadResult, Progress
from damselfly.pieces import PieceLayout, default_piece_length
from damselfly.protocol.pieces import PieceList
from damselfly.protocol.scheduler import ParentInfo, PeerState
from damselfly.settings import PeerSettings
from damselfly.source.registry.reference import blob_digest
from damselfly.source.retry import RetryPolicy
from damselfly.source.types import RangeNotSupported, SourceStat
from damselfly.storage import PieceRecord, Store, TaskRecord, TaskState
from damselfly.storage.gc import GCPolicy, collect

if TYPE_CHECKING:
    from damselfly.peer.fetch import FetchJob, SourceFetcher
    from damselfly.peer.p2p import PeerToPeer, TaskSession
    from damselfly.source.http import HTTPSource

T = TypeVar("T")
_FLUSH_INTERVAL = 0.25


class Downloader:
    """Downloads tasks into a Store: from parents the scheduler names when `p2p` is
    given (the daemon), and from the origin for whatever they cannot give."""

    def __init__(
        self,
        store: Store,
        settings: PeerSettings,
        log: EventLog,
        p2p: PeerToPeer | None = None,
    ) -> None:
        self.p2p = p2p
        self.store = store
        self.settings = settings
        self.log = log
        self.host_id = ids.host_id(settings.ip, settings.hostname, seed=settings.seed)
        self.gc_policy = GCPolicy(
            ttl_seconds=settings.gc_ttl,
            high_watermark=settings.gc_high_watermark,
            low_watermark=settings.gc_low_watermark,
        )
        self.retry = RetryPolicy(
            attempts=settings.retry_attempts, first_backoff=settings.retry_backoff
        )

    def _source(self) -> HTTPSource:
        # imported here so a cache hit does not pay for the HTTP client
        from damselfly.netpolicy import policy_of
        from damselfly.source.http import HTTPSource

        return HTTPSource(
            retry=self.retry,
            connections=self.settings.concurrency,
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            ca_cert=str(self.settings.ca_cert) if self.settings.ca_cert else None,
            policy=policy_of(self.settings),
        )

    async def download(
        self, request: DownloadRequest, progress: Progress | None = None
    ) -> DownloadResult:
        progress = progress or Progress()
        task_id = ids.task_id(request.identity())
        peer_id = ids.peer_id(self.settings.ip, self.settings.hostname, seed=self.settings.seed)
        fields = {
            "host_id": self.host_id,
            "task_id": task_id,
            "peer_id": peer_id,
            "url": request.url,
        }
        started = time.monotonic()
        self.log.info("download task started", **fields)
        lock = self.store.lock(task_id)
        if not await asyncio.to_thread(lock.acquire, timeout=self.settings.lock_wait):
            raise Conflict(
                f"task {task_id} for {request.url} is being downloaded by another process; "
                "wait for it or try again later"
            )
        try:
            try:
                async with asyncio.timeout(request.timeout) as deadline:
                    result = await self._download_locked(request, task_id, peer_id, progress)
            except TimeoutError as exc:
                if deadline.expired():
                    raise DownloadTimeout(
                        f"download of {request.url} (task {task_id}) timed out after "
                        f"{request.timeout:g}s; finished pieces are kept, so run it again "
                        "or raise --timeout"
                    ) from exc
                raise
        except (DamselflyError, asyncio.CancelledError) as exc:
            self.log.error(
                "download task failed",
                **fields,
                error=str(exc) if isinstance(exc, DamselflyError) else "interrupted",
                cost=f"{time.monotonic() - started:.3f}s",
            )
            raise
        finally:
            lock.release()
        self.log.info(
            "download task succeeded",
            **fields,
            content_length=result.content_length,
            from_cache=str(result.from_cache).lower(),
            source_bytes=result.source_bytes,
            peer_bytes=result.peer_bytes,
            cost=f"{result.seconds:.3f}s",
        )
        return result

    async def _download_locked(
        self, request: DownloadRequest, task_id: str, peer_id: str, progress: Progress
    ) -> DownloadResult:
        started = time.monotonic()
        cached = self.store.completed_task(task_id)
        if cached is not None:
            self.store.touch(task_id)
            length = cached.content_length or 0
            progress.start(length, length)
            return DownloadResult(
                task_id,
                peer_id,
                self.store.content_path(task_id),
                length,
                True,
                0,
                0,
                time.monotonic() - started,
            )
        session = None
        parents: list[ParentInfo] = []
        listed: PieceList | None = None
        if self.p2p is not None:
            from damselfly.peer.p2p import TaskSession

            session = TaskSession(self.p2p, request, task_id, peer_id)
            parents = await session.find_parents()
            if parents:
                listed = await session.meta(parents)
                if listed is None:
                    parents = []
        source = self._source()
        try:
            if listed is not None:
                stat = SourceStat(listed.content_length, True, listed.etag, listed.last_modified)
                piece_length = listed.piece_length or default_piece_length(stat.content_length)
            else:
                self._check_back_to_source(request, task_id)
                stat = await _in_thread(source, source.stat, request.url, request.headers)
                piece_length = request.piece_length or default_piece_length(stat.content_length)
            finished = await self._resumable_pieces(task_id, stat, piece_length)
            self._start_record(request, task_id, stat, piece_length)
            try:
                length = await self._fetch(
                    source,
                    request,
                    task_id,
                    stat,
                    piece_length,
                    finished,
                    progress,
                    session,
                    parents,
                )
                await self._verify_blob(request, task_id)
            except BaseException as exc:
                self.store.metadata.update_task(
                    task_id, state=TaskState.FAILED, error=str(exc)[:2000], updated_at=time.time()
                )
                if session is not None:
                    await asyncio.shield(session.end(PeerState.FAILED))
                raise
        finally:
            source.close()
        self.store.metadata.update_task(
            task_id,
            state=TaskState.SUCCEEDED,
            content_length=length,
            error="",
            boot_id=self.store.boot_id,
            updated_at=time.time(),
        )
        if session is not None:
            await session.end(PeerState.SUCCEEDED)
        return DownloadResult(
            task_id,
            peer_id,
            self.store.content_path(task_id),
            length,
            False,
            progress.source_bytes,
            len(finished),
            time.monotonic() - started,
            progress.peer_bytes,
        )

    async def _verify_blob(self, request: DownloadRequest, task_id: str) -> None:
        """A registry blob URL names its digest: check it before anyone is served."""
        expected = blob_digest(request.url)
        if expected is None:
            return
        path = self.store.content_path(task_id)
        actual = await asyncio.to_thread(digests.compute, path, expected.algorithm)
        if actual != expected.hex:
            self.store.metadata.remove_pieces(task_id)
            raise DigestMismatch(
                f"blob {request.url} (task {task_id}) has digest {expected.algorithm}:{actual}, "
                f"not the {expected} its URL names; the bytes were discarded, run it again "
                "(if it repeats, the registry's storage is corrupt)"
            )

    @staticmethod
    def _check_back_to_source(request: DownloadRequest, task_id: str) -> None:
        if request.disable_back_to_source:
            raise NotFound(
                f"task {task_id} for {request.url} is not cached here, no parent has it, and "
                "back-to-source is disabled; drop --disable-back-to-source or fetch it on a "
                "peer that has it"
            )

    async def _fetch(
        self,
        source: HTTPSource,
        request: DownloadRequest,
        task_id: str,
        stat: SourceStat,
        piece_length: int,
        finished: dict[int, PieceRecord],
        progress: Progress,
        session: TaskSession | None,
        parents: list[ParentInfo],
    ) -> int:
        """Fetch the missing bytes into the content file; its final length."""
        from damselfly.peer.fetch import FetchJob, SourceFetcher

        fetcher = SourceFetcher(self.store, self.retry, self.settings.concurrency, self.log)
        fd = await self._open_content(task_id, stat.content_length)
        job = FetchJob(source, request, task_id, stat, piece_length, progress, fd)
        try:
            if stat.supports_range and stat.content_length is not None:
                layout = PieceLayout(stat.content_length, piece_length)
                progress.start(stat.content_length, sum(p.length for p in finished.values()))
                try:
                    await self._with_flusher(
                        source,
                        session,
                        lambda on_piece: self._fetch_pieces(
                            fetcher, job, layout, finished, on_piece, session, parents
                        ),
                        PieceList(
                            task_id,
                            "running",
                            stat.content_length,
                            piece_length,
                            stat.etag,
                            stat.last_modified,
                            epoch=secrets.token_hex(8),
                        ),
                        finished,
                    )
                    return stat.content_length
                except RangeNotSupported:
                    self.log.warning(
                        "origin ignored range requests, streaming instead",
                        task_id=task_id,
                        url=request.url,
                    )
                    self.store.metadata.remove_pieces(task_id)
                    source.reset()
            records = await _in_thread(source, fetcher.fetch_stream, job)
            self.store.metadata.add_pieces(records)
            return progress.total or 0
        finally:
            os.close(fd)

    async def _fetch_pieces(
        self,
        fetcher: SourceFetcher,
        job: FetchJob,
        layout: PieceLayout,
        finished: dict[int, PieceRecord],
        on_piece: Callable[[PieceRecord], None],
        session: TaskSession | None,
        parents: list[ParentInfo],
    ) -> None:
        """From parents while they can give, then the rest from the source."""
        missing = [p for p in layout.pieces() if p.number not in finished]
        if session is not None and parents and missing:
            swarm = session.swarm(
                layout,
                job.fd,
                job.progress,
                on_piece,
                lambda exc: self.store.storage_error(exc, job.task_id, None),
            )
            missing = await swarm.run(parents, set(finished))
            if missing:
                self._check_back_to_source(job.request, job.task_id)
        if missing:
            await _in_thread(job.source, fetcher.fetch_ranged, job, missing, on_piece)

    async def _with_flusher(
        self,
        source: HTTPSource,
        session: TaskSession | None,
        work: Callable[[Callable[[PieceRecord], None]], Awaitable[None]],
        listed: PieceList,
        finished: dict[int, PieceRecord],
    ) -> None:
        """Run `work`; record the pieces it finishes every 0.25 s, and show them to
        children and the scheduler as they land."""
        done: list[PieceRecord] = []
        guard = threading.Lock()

        def on_piece(record: PieceRecord) -> None:
            with guard:
                done.append(record)
            if session is not None:
                session.on_piece(record)

        def flush() -> None:
            with guard:
                batch = list(done)
                done.clear()
            self.store.metadata.add_pieces(batch)

        async def flusher() -> None:
            while True:
                await asyncio.sleep(_FLUSH_INTERVAL)
                flush()

        background = [asyncio.create_task(flusher())]
        if session is not None:
            session.begin(listed, finished)
            background.append(asyncio.create_task(session.report_loop()))
        try:
            await work(on_piece)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            flush()

    def _start_record(
        self, request: DownloadRequest, task_id: str, stat: SourceStat, piece_length: int
    ) -> None:
        now = time.time()
        existing = self.store.metadata.get_task(task_id)
        self.store.metadata.put_task(
            TaskRecord(
                id=task_id,
                url=request.url,
                tag=request.tag,
                application=request.application,
                piece_length=piece_length,
                content_length=stat.content_length,
                state=TaskState.RUNNING,
                source_etag=stat.etag,
                source_last_modified=stat.last_modified,
                boot_id="",
                error="",
                created_at=existing.created_at if existing else now,
                updated_at=now,
                accessed_at=now,
            )
        )

    async def _resumable_pieces(
        self, task_id: str, stat: SourceStat, piece_length: int
    ) -> dict[int, PieceRecord]:
        """Pieces an earlier, interrupted run finished and that still verify."""
        existing = self.store.metadata.get_task(task_id)
        if existing is None:
            return {}
        unchanged = (
            stat.supports_range
            and existing.content_length == stat.content_length
            and existing.piece_length == piece_length
            and existing.source_etag == stat.etag
            and existing.source_last_modified == stat.last_modified
        )
        if not unchanged:
            self.store.metadata.remove_pieces(task_id)
            return {}
        pieces = self.store.metadata.pieces(task_id)
        bad = await asyncio.to_thread(self.store.verify_pieces, task_id, list(pieces.values()))
        if bad:
            self.store.metadata.remove_pieces(task_id, bad)
            for number in bad:
                pieces.pop(number, None)
        if pieces:
            self.log.info(
                "resuming task",
                task_id=task_id,
                finished_pieces=len(pieces),
                discarded_pieces=len(bad),
            )
        return pieces

    async def _open_content(self, task_id: str, content_length: int | None) -> int:
        try:
            return self.store.open_content(task_id, content_length)
        except StorageFull:
            report = await asyncio.to_thread(
                collect, self.store, self.gc_policy, free_at_least=content_length or 0
            )
            self.log.warning(
                "disk full, garbage collected",
                task_id=task_id,
                evicted=len(report.evicted),
                freed_bytes=report.freed_bytes,
            )
            return self.store.open_content(task_id, content_length)


async def _in_thread(source: HTTPSource, fn: Callable[..., T], *args: object) -> T:
    """Run blocking `fn` on a thread; if we are cancelled, abort its reads and wait."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        source.stop()
        await asyncio.wait({future})  # returns within one read once stopped
        if not future.cancelled():
            future.exception()  # the Stopped it ended with is expected, not news
        raise
