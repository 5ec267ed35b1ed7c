"""The scheduler's view: hosts, tasks, and the peers (a host's copy of a task).

Kept in memory only. After a restart the view is rebuilt from what peers announce:
every host re-registers on its next heartbeat and re-announces the tasks it holds.
A host holds a task at most once (one content file per data dir), so a task's peers
are keyed by host ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from damselfly.protocol.scheduler import HostType, PeerState


@dataclass(slots=True, eq=False)
class Host:
    id: str
    hostname: str
    ip: str
    port: int  # the upload server: piece bytes, piece lists, task stat/delete/trigger
    type: HostType
    upload_slots: int
    free_upload_slots: int
    created_at: float
    last_seen: float
    peers: dict[str, Peer] = field(default_factory=dict)  # task ID -> peer

    @property
    def load(self) -> float:
        """Share of upload slots in use, 0..1."""
        if self.upload_slots <= 0:
            return 1.0
        return 1.0 - max(0, self.free_upload_slots) / self.upload_slots


@dataclass(slots=True, eq=False)
class Task:
    id: str
    url: str
    tag: str
    application: str
    piece_length: int | None
    content_length: int | None
    total_pieces: int | None
    created_at: float
    updated_at: float
    peers: dict[str, Peer] = field(default_factory=dict)  # host ID -> peer
    seed_failed: bool = False  # a seed was told to fetch and could not


@dataclass(slots=True, eq=False)
class Peer:
    id: str
    task: Task
    host: Host
    state: PeerState
    finished: int  # bitmap: bit n set when piece n is finished
    finished_count: int
    created_at: float
    updated_at: float
    parents: tuple[str, ...] = ()  # host IDs last handed out as this peer's parents
    blocked: set[str] = field(default_factory=set)  # host IDs this peer will not use
    failures: int = 0  # times children reported this peer as a bad parent
    failed_at: float = 0.0  # when the last of those reports came

    def recent_failures(self, now: float, window: float) -> int:
        """Failures count against a parent only while they are recent."""
        return self.failures if now - self.failed_at <= window else 0

    @property
    def complete(self) -> bool:
        return self.state is PeerState.SUCCEEDED
