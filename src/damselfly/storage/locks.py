"""Per-task file locks, so several processes can share one data directory.

A download holds the task's lock exclusively; GC and deletion take it without
waiting and skip the task when it is busy.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from damselfly.errors import Conflict


class TaskLock:
    def __init__(self, path: Path, task_id: str) -> None:
        self.path = path
        self.task_id = task_id
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; False when not blocking (or timed out) and another holds it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not blocking or (deadline is not None and time.monotonic() >= deadline):
                    return False
                time.sleep(0.05)
                continue
            # The file may have been unlinked by a deleter between our open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)

    def release(self, *, unlink: bool = False) -> None:
        if self._fd is None:
            return
        if unlink:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> TaskLock:
        if not self.acquire():
            raise Conflict(f"task {self.task_id} is locked by another process")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
