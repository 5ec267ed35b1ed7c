"""Peer <-> peer: a task's finished pieces, as a parent tells a child.

Piece bytes themselves are plain HTTP ranged GETs of
`/download/<task_id[:3]>/<task_id>?peerId=<child>` served with sendfile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from damselfly.errors import InvalidInput


def download_path(task_id: str) -> str:
    return f"/download/{task_id[:3]}/{task_id}"


@dataclass(slots=True)
class PieceList:
    task_id: str
    state: str  # running | succeeded | failed
    content_length: int | None
    piece_length: int | None
    etag: str = ""
    last_modified: str = ""
    # number -> CRC-32, in the order the pieces finished, so `since` can cut a delta
    pieces: dict[int, int] = field(default_factory=dict)
    # names this order: a parent that restarts a download starts a new order, and a
    # child's count of an old one must not cut a delta from it
    epoch: str = ""

    def delta_for(self, since: int, epoch: str) -> int:
        """How many pieces a child that knows the first `since` of `epoch` may skip.

        A finished task's list comes from the database in piece order, not finishing
        order, a list of another epoch is another order, and a shorter one was
        restarted: all go out whole.
        """
        if self.state != "running" or epoch != self.epoch:
            return 0
        return since if 0 <= since <= len(self.pieces) else 0

    def to_json(self, since: int = 0) -> dict[str, Any]:
        """With `since=N`, only the pieces after the first N finished (a delta)."""
        items = list(self.pieces.items())
        return {
            "task_id": self.task_id,
            "epoch": self.epoch,
            "state": self.state,
            "content_length": self.content_length,
            "piece_length": self.piece_length,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "count": len(items),
            "since": since,
            "pieces": [[n, crc] for n, crc in items[since:]],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], known: dict[int, int] | None = None) -> PieceList:
        """Parse; a delta (`since` > 0) is applied on top of the `known` pieces."""
        try:
            since = int(data.get("since") or 0)
            pieces = dict(list((known or {}).items())[:since]) if since else {}
            pieces.update((int(n), int(crc)) for n, crc in data.get("pieces") or [])
            return cls(
                task_id=str(data["task_id"]),
                state=str(data["state"]),
                content_length=data.get("content_length"),
                piece_length=data.get("piece_length"),
                etag=str(data.get("etag") or ""),
                last_modified=str(data.get("last_modified") or ""),
                pieces=pieces,
                epoch=str(data.get("epoch") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed piece list from a parent: {exc}") from None
