"""What a download asks for, and what it reports back."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from damselfly.ids import TaskIdentity


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    url: str
    tag: str = ""
    application: str = ""
    piece_length: int | None = None
    filtered_query_params: tuple[str, ...] | None = None
    content_for_calculating_task_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    disable_back_to_source: bool = False

    def identity(self) -> TaskIdentity:
        return TaskIdentity(
            url=self.url,
            tag=self.tag,
            application=self.application,
            piece_length=self.piece_length,
            filtered_query_params=self.filtered_query_params,
            content_for_calculating_task_id=self.content_for_calculating_task_id,
        )


@dataclass(slots=True)
class Progress:
    """Counters the engine's worker threads update and a progress bar reads."""

    total: int | None = None
    done: int = 0
    reused: int = 0  # bytes already here (cache hit or resumed pieces), not moved now
    source_bytes: int = 0  # bytes read from the origin by this download
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def received(self, n: int) -> None:
        with self.lock:
            self.done += n
            self.source_bytes += n

    def discard(self, n: int) -> None:
        """Bytes of a failed attempt: read, but to be read again."""
        with self.lock:
            self.done -= n

    def start(self, total: int | None, reused: int) -> None:
        with self.lock:
            self.total, self.done, self.reused = total, reused, reused


@dataclass(frozen=True, slots=True)
class DownloadResult:
    task_id: str
    peer_id: str
    content_path: Path
    content_length: int
    from_cache: bool
    source_bytes: int
    reused_pieces: int
    seconds: float
