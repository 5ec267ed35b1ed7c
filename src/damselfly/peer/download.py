"""The download engine: a task's pieces fetched concurrently and written in place.

A piece is recorded as finished only after all its bytes are written and its CRC-32
computed, so an interrupted task resumes from the recorded pieces (re-verified).
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damselfly import ids
from damselfly.errors import Conflict, DamselflyError, DownloadTimeout, NotFound, StorageFull
from damselfly.logs import EventLog
from damselfly.peer.request import DownloadRequest, DownloadResult, Progress
from damselfly.pieces import Piece, PieceLayout, default_piece_length
from damselfly.settings import PeerSettings
from damselfly.source.retry import RetryPolicy, with_retries
from damselfly.source.types import RangeNotSupported, SourceStat
from damselfly.storage import PieceRecord, Store, TaskRecord, TaskState
from damselfly.storage.gc import GCPolicy, collect

if TYPE_CHECKING:
    from damselfly.source.http import HTTPSource

_FLUSH_INTERVAL = 0.25


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


@dataclass(slots=True)
class _Job:
    """One download's fixed inputs and running counters."""

    source: HTTPSource
    request: DownloadRequest
    task_id: str
    stat: SourceStat
    piece_length: int
    progress: Progress
    fd: int = -1
    source_bytes: int = 0


class Downloader:
    """Downloads tasks into a Store from their origin (parents come with the P2P layer)."""

    def __init__(self, store: Store, settings: PeerSettings, log: EventLog) -> None:
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
        from damselfly.source.http import HTTPSource  # aiohttp only when going to the origin

        return HTTPSource(
            retry=self.retry,
            connections=self.settings.concurrency,
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            ca_cert=str(self.settings.ca_cert) if self.settings.ca_cert else None,
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
        except DamselflyError as exc:
            self.log.error(
                "download task failed",
                **fields,
                error=str(exc),
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
            progress.total = progress.done = progress.reused = length
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
        if request.disable_back_to_source:
            raise NotFound(
                f"task {task_id} for {request.url} is not cached here and back-to-source is "
                "disabled; drop --disable-back-to-source or fetch it on a peer that has it"
            )
        async with self._source() as source:
            stat = await source.stat(request.url, request.headers)
            piece_length = request.piece_length or default_piece_length(stat.content_length)
            finished = await self._resumable_pieces(task_id, stat, piece_length)
            self._start_record(request, task_id, stat, piece_length)
            job = _Job(source, request, task_id, stat, piece_length, progress)
            try:
                length = await self._fetch(job, finished)
            except BaseException as exc:
                self.store.metadata.update_task(
                    task_id,
                    state=TaskState.FAILED,
                    error=str(_unwrap(exc))[:2000],
                    updated_at=time.time(),
                )
                raise _unwrap(exc) from None
        self.store.metadata.update_task(
            task_id,
            state=TaskState.SUCCEEDED,
            content_length=length,
            error="",
            boot_id=self.store.boot_id,
            updated_at=time.time(),
        )
        return DownloadResult(
            task_id,
            peer_id,
            self.store.content_path(task_id),
            length,
            False,
            job.source_bytes,
            len(finished),
            time.monotonic() - started,
        )

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

    def _write(self, fd: int, task_id: str, data: bytes | memoryview, offset: int) -> None:
        try:
            _pwrite_all(fd, data, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self.store.storage_error(exc, task_id, None) from exc
            raise

    async def _fetch(self, job: _Job, finished: dict[int, PieceRecord]) -> int:
        """Fetch the missing bytes into the content file; its final length."""
        job.fd = await self._open_content(job.task_id, job.stat.content_length)
        try:
            if job.stat.supports_range and job.stat.content_length is not None:
                try:
                    return await self._fetch_ranged(job, finished)
                except* RangeNotSupported:
                    self.log.warning(
                        "origin ignored range requests, streaming instead",
                        task_id=job.task_id,
                        url=job.request.url,
                    )
                    self.store.metadata.remove_pieces(job.task_id)
                    finished.clear()
            return await self._fetch_stream(job)
        finally:
            os.close(job.fd)

    async def _fetch_ranged(self, job: _Job, finished: dict[int, PieceRecord]) -> int:
        """Missing pieces by ranged GETs, `concurrency` at a time."""
        length = job.stat.content_length
        assert length is not None
        layout = PieceLayout(length, job.piece_length)
        todo = deque(p for p in layout.pieces() if p.number not in finished)
        progress = job.progress
        progress.total = length
        progress.done = progress.reused = sum(p.length for p in finished.values())
        done: list[PieceRecord] = []

        def flush() -> None:
            if done:
                self.store.metadata.add_pieces(list(done))
                done.clear()

        async def fetch_piece(piece: Piece) -> int:
            written = crc = 0

            def on_chunk(chunk: bytes) -> None:
                nonlocal written, crc
                self._write(job.fd, job.task_id, chunk, piece.offset + written)
                crc = zlib.crc32(chunk, crc)
                written += len(chunk)
                progress.done += len(chunk)
                job.source_bytes += len(chunk)

            async def attempt() -> int:
                nonlocal written, crc
                written = crc = 0
                try:
                    await job.source.read_range(
                        job.request.url,
                        job.request.headers,
                        piece.offset,
                        piece.length,
                        on_chunk,
                        etag=job.stat.etag,
                    )
                except BaseException:
                    progress.done -= written
                    raise
                return crc

            def on_retry(exc: Exception, delay: float) -> None:
                self.log.warning(
                    "piece fetch failed, retrying",
                    task_id=job.task_id,
                    piece=piece.number,
                    delay=f"{delay:.2f}s",
                    error=str(exc),
                )

            return await with_retries(self.retry, attempt, on_retry=on_retry)

        async def worker() -> None:
            while todo:
                piece = todo.popleft()
                crc = await fetch_piece(piece)
                done.append(PieceRecord(job.task_id, piece.number, piece.offset, piece.length, crc))

        async def flusher() -> None:
            while True:
                await asyncio.sleep(_FLUSH_INTERVAL)
                flush()

        flushing = asyncio.create_task(flusher())
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.settings.concurrency, len(todo))):
                    group.create_task(worker())
        finally:
            flushing.cancel()
            flush()
        return length

    async def _fetch_stream(self, job: _Job) -> int:
        """One GET for the whole body; pieces are cut as the bytes go by."""
        records: list[PieceRecord] = []
        piece_length = job.piece_length
        offset = crc = filled = 0
        job.progress.total = job.stat.content_length

        def on_chunk(chunk: bytes) -> None:
            nonlocal offset, crc, filled
            self._write(job.fd, job.task_id, chunk, offset)
            view = memoryview(chunk)
            while view:
                take = min(len(view), piece_length - filled)
                crc = zlib.crc32(view[:take], crc)
                filled += take
                view = view[take:]
                if filled == piece_length:
                    number = len(records)
                    records.append(
                        PieceRecord(job.task_id, number, number * piece_length, piece_length, crc)
                    )
                    crc = filled = 0
            offset += len(chunk)
            job.progress.done += len(chunk)
            job.source_bytes += len(chunk)

        async def attempt() -> int:
            nonlocal offset, crc, filled
            records.clear()
            job.progress.done = job.progress.reused = offset = crc = filled = 0
            return await job.source.read_all(job.request.url, job.request.headers, on_chunk)

        total = await with_retries(self.retry, attempt)
        if filled:
            number = len(records)
            records.append(PieceRecord(job.task_id, number, number * piece_length, filled, crc))
        os.ftruncate(job.fd, total)
        self.store.metadata.add_pieces(records)
        job.progress.total = total
        return total


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, for a one-line message."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
