"""The content store of one peer: `<data>/content/tasks/<id[:3]>/<id>` plus metadata."""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from damselfly.errors import StorageFull
from damselfly.pieces import crc32
from damselfly.storage.filesystems import preallocates_cheaply
from damselfly.storage.locks import TaskLock
from damselfly.storage.metadata import MetadataDB, PieceRecord, TaskRecord, TaskState

_VERIFY_CHUNK = 4 * 1024 * 1024


def current_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class DiskUsage:
    total: int
    used: int
    free: int

    @property
    def used_fraction(self) -> float:
        return self.used / self.total if self.total else 0.0


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.tasks_dir = data_dir / "content" / "tasks"
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = MetadataDB(data_dir / "metadata.db")
        self.boot_id = current_boot_id()
        self.preallocate = preallocates_cheaply(self.tasks_dir)

    def close(self) -> None:
        self.metadata.close()

    def content_path(self, task_id: str) -> Path:
        return self.tasks_dir / task_id[:3] / task_id

    def lock(self, task_id: str) -> TaskLock:
        return TaskLock(self.tasks_dir / task_id[:3] / f"{task_id}.lock", task_id)

    def disk_usage(self) -> DiskUsage:
        usage = shutil.disk_usage(self.data_dir)
        return DiskUsage(usage.total, usage.used, usage.free)

    def open_content(self, task_id: str, content_length: int | None) -> int:
        """Open (creating) the content file for writing, sized when the length is known.

        Where it is cheap (see `filesystems`) the file is pre-allocated, so a full disk
        shows now and the writes are faster; elsewhere free space is checked up front
        and the file is sparse. A write that still hits a full disk fails with the
        same StorageFull error.
        """
        path = self.content_path(task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if content_length is not None:
                allocated = os.fstat(fd).st_blocks * 512
                if content_length - allocated > self.disk_usage().free:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                if self.preallocate and content_length > allocated:
                    os.posix_fallocate(fd, 0, content_length)
                os.ftruncate(fd, content_length)
        except OSError as exc:
            os.close(fd)
            raise self.storage_error(exc, task_id, content_length) from exc
        return fd

    def storage_error(self, exc: OSError, task_id: str, needed: int | None) -> Exception:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = self.disk_usage().free
            need = f"{needed} bytes" if needed else "more space"
            return StorageFull(
                f"no space left in {self.data_dir} for task {task_id}: need {need}, "
                f"{free} bytes free; free some space or choose another --data-dir"
            )
        return exc

    def verify_pieces(self, task_id: str, pieces: Iterable[PieceRecord]) -> list[int]:
        """Numbers of pieces whose bytes on disk no longer match their CRC-32."""
        bad: list[int] = []
        try:
            fd = os.open(self.content_path(task_id), os.O_RDONLY)
        except FileNotFoundError:
            return [p.number for p in pieces]
        try:
            for piece in pieces:
                crc, done = 0, 0
                while done < piece.length:
                    chunk = os.pread(
                        fd, min(_VERIFY_CHUNK, piece.length - done), piece.offset + done
                    )
                    if not chunk:
                        break
                    crc = crc32(chunk, crc)
                    done += len(chunk)
                if done != piece.length or crc != piece.crc32:
                    bad.append(piece.number)
        finally:
            os.close(fd)
        return bad

    def completed_task(self, task_id: str) -> TaskRecord | None:
        """The task if its content is whole here, re-verified once after a reboot."""
        record = self.metadata.get_task(task_id)
        if record is None or record.state is not TaskState.SUCCEEDED:
            return None
        if not self.content_path(task_id).exists():
            self.metadata.delete_task(task_id)
            return None
        if record.boot_id != self.boot_id:
            # Written pages may not have reached the disk before a power loss.
            bad = self.verify_pieces(task_id, self.metadata.pieces(task_id).values())
            if bad:
                self.metadata.remove_pieces(task_id, bad)
                self.metadata.update_task(task_id, state=TaskState.RUNNING, updated_at=time.time())
                return None
            self.metadata.update_task(task_id, boot_id=self.boot_id)
            record.boot_id = self.boot_id
        return record

    def touch(self, task_id: str) -> None:
        self.metadata.update_task(task_id, accessed_at=time.time())

    def delete(self, task_id: str) -> int:
        """Remove a task's content and metadata; the caller holds its lock. Bytes freed."""
        path = self.content_path(task_id)
        try:
            freed = path.stat().st_blocks * 512
            path.unlink()
        except FileNotFoundError:
            freed = 0
        self.metadata.delete_task(task_id)
        return freed
