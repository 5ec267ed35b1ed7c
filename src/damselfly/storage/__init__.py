"""A peer's content store: one content file per task, metadata in SQLite, GC."""

from damselfly.storage.metadata import PieceRecord, TaskRecord, TaskState
from damselfly.storage.store import Store

__all__ = ["PieceRecord", "Store", "TaskRecord", "TaskState"]
