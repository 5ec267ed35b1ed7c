"""Task and piece metadata in a small per-peer SQLite database.

A piece row exists only once its bytes are written and its CRC-32 checked, so the
rows are the finished-piece bitmap; an interrupted task resumes from them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from enum import StrEnum
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    tag TEXT NOT NULL,
    application TEXT NOT NULL,
    piece_length INTEGER NOT NULL,
    content_length INTEGER,
    state TEXT NOT NULL,
    source_etag TEXT NOT NULL,
    source_last_modified TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    accessed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_access ON tasks (accessed_at);
CREATE TABLE IF NOT EXISTS pieces (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    length INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    PRIMARY KEY (task_id, number)
) WITHOUT ROWID;
"""


class TaskState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(slots=True)
class TaskRecord:
    id: str
    url: str
    tag: str
    application: str
    piece_length: int
    content_length: int | None
    state: TaskState
    source_etag: str
    source_last_modified: str
    boot_id: str  # the boot the content was completed in; a new boot re-verifies it
    error: str
    created_at: float
    updated_at: float
    accessed_at: float


@dataclass(frozen=True, slots=True)
class PieceRecord:
    task_id: str
    number: int
    offset: int
    length: int
    crc32: int


_TASK_COLUMNS = ", ".join(f.name for f in fields(TaskRecord))
_TASK_PLACEHOLDERS = ", ".join("?" for _ in fields(TaskRecord))


class MetadataDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock; SQLite's own locking covers other processes.
        self._conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"metadata schema {version} is newer than this damselfly knows "
                    f"({SCHEMA_VERSION}); upgrade damselfly or use another --data-dir"
                )
            if version < SCHEMA_VERSION:
                self._conn.executescript(
                    f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @staticmethod
    def _task(row: tuple) -> TaskRecord:
        record = TaskRecord(*row)
        record.state = TaskState(record.state)
        return record

    def get_task(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        return self._task(row) if row else None

    def put_task(self, record: TaskRecord) -> None:
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO tasks ({_TASK_COLUMNS}) VALUES ({_TASK_PLACEHOLDERS})",
                astuple(record),
            )

    def update_task(self, task_id: str, **changes: object) -> None:
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._lock:
            self._conn.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ?", (*changes.values(), task_id)
            )

    def delete_task(self, task_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))

    def tasks(self, *, oldest_access_first: bool = True) -> list[TaskRecord]:
        order = "ASC" if oldest_access_first else "DESC"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY accessed_at {order}"
            ).fetchall()
        return [self._task(row) for row in rows]

    def pieces(self, task_id: str) -> dict[int, PieceRecord]:
        with self._lock:
            rows = self._conn.execute(
                'SELECT task_id, number, "offset", length, crc32 FROM pieces WHERE task_id = ?',
                (task_id,),
            ).fetchall()
        return {row[1]: PieceRecord(*row) for row in rows}

    def add_pieces(self, pieces: Iterable[PieceRecord]) -> None:
        rows = [astuple(p) for p in pieces]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                'INSERT OR REPLACE INTO pieces (task_id, number, "offset", length, crc32) '
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._conn.execute("COMMIT")

    def remove_pieces(self, task_id: str, numbers: Iterable[int] | None = None) -> None:
        with self._lock:
            if numbers is None:
                self._conn.execute("DELETE FROM pieces WHERE task_id = ?", (task_id,))
            else:
                self._conn.executemany(
                    "DELETE FROM pieces WHERE task_id = ? AND number = ?",
                    [(task_id, n) for n in numbers],
                )
