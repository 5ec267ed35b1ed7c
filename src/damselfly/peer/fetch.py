"""The byte path: pieces read from an origin and written in place, on worker threads.

Each worker owns a 1 MiB buffer: `readinto` it, `pwrite` it (16 KiB at a time),
CRC-32 it. All three release the GIL, so the workers use every core; the event loop
only orchestrates.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from damselfly.logs import EventLog
from damselfly.peer.ramp import Ramp
from damselfly.peer.request import DownloadRequest, Progress
from damselfly.pieces import Piece, PieceLayout, crc32
from damselfly.source.http import HTTPSource, Stopped
from damselfly.source.retry import RetryPolicy, with_retries
from damselfly.source.types import SourceStat
from damselfly.storage import PieceRecord, Store

# Reads fill up to 1 MiB (engine time for 1 GiB: median 1.01 s against 1.17 s with
# 256 KiB, alternating runs); writes go out 16 KiB at a time, as curl's do. Each
# write's size picks the size of the page-cache folios the kernel allocates for it,
# and on this VM large folios land on memory the hypervisor has taken back: writing
# 1 GiB in 256 KiB writes took 1.9-3.0 s, in 16 KiB writes 0.45-0.55 s
# (docs/design-notes.md).
READ_BUFFER = 1024 * 1024
WRITE_CHUNK = 16 * 1024


@dataclass(slots=True)
class FetchJob:
    """One task's fetch: where the bytes come from and go to."""

    source: HTTPSource
    request: DownloadRequest
    task_id: str
    stat: SourceStat
    piece_length: int
    progress: Progress
    fd: int
    # Buffered writes to one file take the inode's lock in the kernel, whose waiters
    # spin: with 8 workers a fifth of all CPU went to rwsem_spin_on_owner. Waiting
    # on this lock sleeps instead.
    write_lock: threading.Lock = field(default_factory=threading.Lock)


class SourceFetcher:
    def __init__(self, store: Store, retry: RetryPolicy, concurrency: int, log: EventLog) -> None:
        self.store = store
        self.retry = retry
        self.concurrency = concurrency
        self.log = log

    def _writer(self, job: FetchJob) -> Callable[[memoryview, int], None]:
        fd, lock, pwrite = job.fd, job.write_lock, os.pwrite  # 65,536 writes per GiB

        def write(view: memoryview, offset: int) -> None:
            end, done = len(view), 0
            # one lock hold per buffer: per chunk, the waiters' wake-ups cost a fifth
            with lock:
                try:
                    while done < end:
                        done += pwrite(fd, view[done : done + WRITE_CHUNK], offset + done)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise self.store.storage_error(exc, job.task_id, None) from exc
                    raise

        return write

    def fetch_ranged(
        self,
        job: FetchJob,
        missing: list[Piece],
        on_piece: Callable[[PieceRecord], None],
    ) -> None:
        """Fetch `missing` pieces with ranged GETs, as many at once as pays (see `ramp`)."""
        todo = deque(missing)
        errors: list[BaseException] = []
        ramp = Ramp(self.concurrency)
        lock = threading.Lock()
        changed = threading.Event()  # a worker left: look again now
        running: list[threading.Thread] = []

        def leave() -> None:
            running.remove(threading.current_thread())
            changed.set()

        def worker() -> None:
            buffer = bytearray(READ_BUFFER)
            while True:
                with lock:  # a worker over the target leaves between pieces
                    if errors or len(running) > ramp.target or not todo:
                        leave()
                        return
                    piece = todo.popleft()
                began = time.monotonic()
                try:
                    crc = self._fetch_piece(job, piece, buffer)
                    ramp.piece_took(time.monotonic() - began)
                    on_piece(
                        PieceRecord(job.task_id, piece.number, piece.offset, piece.length, crc)
                    )
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                        leave()
                    job.source.stop()  # the others stop within one read
                    return

        def staff(count: int) -> None:
            with lock:
                while len(running) < min(count, len(todo)) and not errors:
                    thread = threading.Thread(target=worker, name="damselfly-fetch", daemon=True)
                    running.append(thread)
                    thread.start()

        ramp.observe(time.monotonic(), job.progress.source_bytes)
        staff(ramp.target)
        workers = ramp.target
        while True:
            with lock:
                if not running:
                    break
            changed.wait(ramp.min_window / 2)
            changed.clear()
            wanted = ramp.observe(time.monotonic(), job.progress.source_bytes)
            if wanted != workers:
                self.log.info(
                    "fetch workers changed",
                    task_id=job.task_id,
                    workers=wanted,
                    was=workers,
                    rate=f"{ramp.rate / 1e6:.1f}MB/s",
                )
                workers = wanted
            staff(wanted)
        if errors:
            # the first error is the cause; later ones are mostly the Stopped it caused
            real = [e for e in errors if not isinstance(e, Stopped)]
            raise (real or errors)[0]

    def _fetch_piece(self, job: FetchJob, piece: Piece, buffer: bytearray) -> int:
        write = self._writer(job)

        def attempt() -> int:
            written = crc = 0

            def sink(view: memoryview) -> None:
                nonlocal written, crc
                write(view, piece.offset + written)
                crc = crc32(view, crc)
                written += len(view)
                job.progress.received(len(view))

            try:
                job.source.read_range(
                    job.request.url,
                    job.request.headers,
                    piece.offset,
                    piece.length,
                    sink,
                    buffer,
                    etag=job.stat.etag,
                )
            except BaseException:
                job.progress.discard(written)
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

        return with_retries(self.retry, attempt, on_retry=on_retry, stop=job.source.stopping)

    def fetch_stream(self, job: FetchJob) -> list[PieceRecord]:
        """One GET for the whole body; pieces are cut as the bytes go by."""
        write = self._writer(job)
        buffer = bytearray(READ_BUFFER)

        def attempt() -> tuple[int, _PieceCutter]:
            cutter = _PieceCutter(job.task_id, job.piece_length)
            offset = 0

            def sink(view: memoryview) -> None:
                nonlocal offset
                write(view, offset)
                cutter.cut(view)
                offset += len(view)
                job.progress.received(len(view))

            job.progress.start(job.stat.content_length, 0)
            total = job.source.read_all(job.request.url, job.request.headers, sink, buffer)
            return total, cutter

        total, cutter = with_retries(self.retry, attempt, stop=job.source.stopping)
        os.ftruncate(job.fd, total)
        with job.progress.lock:
            job.progress.total = total
        return cutter.records(total)


class _PieceCutter:
    """Cuts a byte stream into pieces and their CRC-32s."""

    def __init__(self, task_id: str, piece_length: int) -> None:
        self.task_id = task_id
        self.piece_length = piece_length
        self._crcs: list[int] = []
        self._crc = 0
        self._filled = 0

    def cut(self, view: memoryview) -> None:
        while view:
            take = min(len(view), self.piece_length - self._filled)
            self._crc = crc32(view[:take], self._crc)
            self._filled += take
            view = view[take:]
            if self._filled == self.piece_length:
                self._crcs.append(self._crc)
                self._crc = self._filled = 0

    def records(self, total: int) -> list[PieceRecord]:
        crcs = self._crcs + ([self._crc] if self._filled else [])
        layout = PieceLayout(total, self.piece_length)
        return [
            PieceRecord(self.task_id, p.number, p.offset, p.length, crc)
            for p, crc in zip(layout.pieces(), crcs, strict=True)
        ]
