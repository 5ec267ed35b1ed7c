"""Tasks this daemon is downloading right now, as the upload server sees them.

Children may fetch a piece from a parent that is still downloading, so the upload
server needs each running task's finished pieces as they land; completed tasks are
read from the metadata database instead. Piece callbacks arrive on worker threads
and are handed to the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from damselfly.protocol.pieces import PieceList
from damselfly.storage import PieceRecord


@dataclass(eq=False)
class ActiveTask:
    pieces: PieceList
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _notify(self) -> None:
        # waiters hold the old event; a fresh one is armed for the next change
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def add(self, record: PieceRecord) -> None:
        self.pieces.pieces[record.number] = record.crc32
        self._notify()

    def finish(self, state: str) -> None:
        self.pieces.state = state
        self._notify()


class ActiveTasks:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._tasks: dict[str, ActiveTask] = {}

    def get(self, task_id: str) -> ActiveTask | None:
        return self._tasks.get(task_id)

    def begin(self, pieces: PieceList) -> ActiveTask:
        task = ActiveTask(pieces)
        previous = self._tasks.get(pieces.task_id)
        self._tasks[pieces.task_id] = task
        if previous is not None:
            previous.finish(pieces.state)
        return task

    def add_from_thread(self, task: ActiveTask, record: PieceRecord) -> None:
        self.loop.call_soon_threadsafe(task.add, record)

    def end(self, task: ActiveTask, state: str) -> None:
        task.finish(state)
        if self._tasks.get(task.pieces.task_id) is task:
            del self._tasks[task.pieces.task_id]

    def running(self) -> list[str]:
        return list(self._tasks)
