"""What a download asks for, and what it reports back."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damselfly.errors import InvalidInput
from damselfly.ids import TaskIdentity, parse_url
from damselfly.pieces import check_piece_length


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
    peer_bytes: int = 0  # bytes read from parents by this download
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def received(self, n: int, *, from_source: bool = True) -> None:
        with self.lock:
            self.done += n
            if from_source:
                self.source_bytes += n
            else:
                self.peer_bytes += n

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
    peer_bytes: int = 0


SUPPORTED_SCHEMES = ("http", "https")


def check_url(url: str) -> str:
    parsed = parse_url(url)
    scheme = parsed.protocol.rstrip(":")
    if scheme not in SUPPORTED_SCHEMES:
        raise InvalidInput(
            f"unsupported scheme {scheme!r} in {url}; damselfly fetches http and https URLs"
        )
    return url


def request_to_json(r: DownloadRequest) -> dict[str, Any]:
    return {
        "url": r.url,
        "tag": r.tag,
        "application": r.application,
        "piece_length": r.piece_length,
        "filtered_query_params": (
            list(r.filtered_query_params) if r.filtered_query_params is not None else None
        ),
        "content_for_calculating_task_id": r.content_for_calculating_task_id,
        "headers": dict(r.headers),
        "timeout": r.timeout,
        "disable_back_to_source": r.disable_back_to_source,
    }


def request_from_json(data: Mapping[str, Any]) -> DownloadRequest:
    """A request from another process (the CLI, the scheduler), checked as the CLI does."""
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidInput("url is required")
    check_url(url)
    piece_length = data.get("piece_length")
    if piece_length is not None:
        if isinstance(piece_length, bool) or not isinstance(piece_length, int):
            raise InvalidInput("piece_length must be an integer number of bytes")
        check_piece_length(piece_length)
    filters = data.get("filtered_query_params")
    if filters is not None and (
        not isinstance(filters, list) or not all(isinstance(f, str) for f in filters)
    ):
        raise InvalidInput("filtered_query_params must be a list of strings")
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidInput("headers must be an object of strings")
    timeout = data.get("timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise InvalidInput("timeout must be a positive number of seconds")
    content = data.get("content_for_calculating_task_id")
    return DownloadRequest(
        url=url,
        tag=str(data.get("tag") or ""),
        application=str(data.get("application") or ""),
        piece_length=piece_length,
        filtered_query_params=tuple(filters) if filters is not None else None,
        content_for_calculating_task_id=str(content) if content is not None else None,
        headers=headers,
        timeout=float(timeout) if timeout is not None else None,
        disable_back_to_source=bool(data.get("disable_back_to_source", False)),
    )


def result_to_json(r: DownloadResult) -> dict[str, Any]:
    return {
        "task_id": r.task_id,
        "peer_id": r.peer_id,
        "content_path": str(r.content_path),
        "content_length": r.content_length,
        "from_cache": r.from_cache,
        "source_bytes": r.source_bytes,
        "peer_bytes": r.peer_bytes,
        "reused_pieces": r.reused_pieces,
        "seconds": r.seconds,
    }


def result_from_json(data: Mapping[str, Any]) -> DownloadResult:
    return DownloadResult(
        task_id=data["task_id"],
        peer_id=data["peer_id"],
        content_path=Path(data["content_path"]),
        content_length=int(data["content_length"]),
        from_cache=bool(data["from_cache"]),
        source_bytes=int(data["source_bytes"]),
        reused_pieces=int(data["reused_pieces"]),
        seconds=float(data["seconds"]),
        peer_bytes=int(data.get("peer_bytes", 0)),
    )
