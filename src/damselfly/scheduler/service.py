"""The scheduler's decisions, free of any transport: the HTTP API and the in-process
benchmark both drive this class."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from damselfly.errors import NotFound
from damselfly.protocol.scheduler import Announcement, HostInfo, HostType, PeerState
from damselfly.scheduler.resources import Host, Peer, Task
from damselfly.scheduler.selection import SelectionPolicy, select_parents


class UnknownHost(NotFound):
    """The scheduler has not (or no longer) seen this host; it must register again."""

    code = "UnknownHost"


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    parents: list[Peer]
    back_to_source: bool
    trigger_seed: Host | None = None  # tell this seed to fetch the task from the source


class Scheduler:
    def __init__(
        self,
        policy: SelectionPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or SelectionPolicy()
        self.clock = clock
        self.rng = rng or random.Random()
        self.hosts: dict[str, Host] = {}
        self.tasks: dict[str, Task] = {}
        self.seeds: dict[str, Host] = {}  # the super hosts among `hosts`

    # hosts

    def register_host(self, info: HostInfo) -> bool:
        """Register or heartbeat. True when the host was not known (it should re-announce)."""
        now = self.clock()
        host = self.hosts.get(info.id)
        if host is None:
            self.hosts[info.id] = Host(
                id=info.id,
                hostname=info.hostname,
                ip=info.ip,
                port=info.port,
                type=info.type,
                upload_slots=info.upload_slots,
                free_upload_slots=info.free_upload_slots,
                created_at=now,
                last_seen=now,
            )
            if info.type is HostType.SUPER:
                self.seeds[info.id] = self.hosts[info.id]
            return True
        host.hostname, host.ip, host.port, host.type = info.hostname, info.ip, info.port, info.type
        host.upload_slots, host.free_upload_slots = info.upload_slots, info.free_upload_slots
        host.last_seen = now
        if info.type is HostType.SUPER:
            self.seeds[info.id] = host
        else:
            self.seeds.pop(info.id, None)
        return False

    def remove_host(self, host_id: str) -> bool:
        host = self.hosts.pop(host_id, None)
        self.seeds.pop(host_id, None)
        if host is None:
            return False
        for peer in list(host.peers.values()):
            self._drop_peer(peer)
        return True

    def expire_hosts(self) -> list[str]:
        """Forget hosts that stopped heartbeating; their IDs."""
        deadline = self.clock() - self.policy.host_ttl
        gone = [h.id for h in self.hosts.values() if h.last_seen < deadline]
        for host_id in gone:
            self.remove_host(host_id)
        return gone

    def alive(self, host: Host) -> bool:
        return self.clock() - host.last_seen <= self.policy.host_ttl

    # tasks and peers

    def announce(self, a: Announcement) -> AnnounceResult:
        host = self.hosts.get(a.host_id)
        if host is None:
            raise UnknownHost(f"host {a.host_id} is not registered with this scheduler")
        now = self.clock()
        host.last_seen = now
        task = self._task(a, now)
        peer = task.peers.get(host.id)
        if peer is None:
            peer = Peer(
                id=a.peer_id,
                task=task,
                host=host,
                state=a.state,
                finished=a.finished,
                finished_count=a.finished.bit_count(),
                created_at=now,
                updated_at=now,
            )
            task.peers[host.id] = peer
            host.peers[task.id] = peer
        else:
            peer.id, peer.state, peer.updated_at = a.peer_id, a.state, now
            peer.finished, peer.finished_count = a.finished, a.finished.bit_count()
        for bad in a.bad_parents:
            peer.blocked.add(bad)
            culprit = task.peers.get(bad)
            if culprit is not None:
                culprit.failures += 1
                culprit.failed_at = now
        if a.state is PeerState.FAILED:
            self._drop_peer(peer)
            return AnnounceResult([], back_to_source=False)
        if a.state is PeerState.SUCCEEDED:
            peer.parents = ()
            task.seed_failed = False
            return AnnounceResult([], back_to_source=False)
        if not a.need_parents:
            return AnnounceResult([], back_to_source=False)
        parents = select_parents(peer, now, self.policy, self.rng)
        peer.parents = tuple(p.host.id for p in parents)
        if parents:
            return AnnounceResult(parents, back_to_source=False)
        seed = None if host.type is HostType.SUPER or task.seed_failed else self._seed_for(peer)
        if seed is None:
            return AnnounceResult([], back_to_source=True)
        pending = Peer(
            id=f"{seed.id}-pending",
            task=task,
            host=seed,
            state=PeerState.PENDING,
            finished=0,
            finished_count=0,
            created_at=now,
            updated_at=now,
        )
        task.peers[seed.id] = pending
        seed.peers[task.id] = pending
        peer.parents = (seed.id,)
        return AnnounceResult([pending], back_to_source=False, trigger_seed=seed)

    def seed_failed(self, task_id: str, seed_host_id: str) -> None:
        """A seed could not be told to fetch: children go back to source instead."""
        task = self.tasks.get(task_id)
        if task is None:
            return
        task.seed_failed = True
        peer = task.peers.get(seed_host_id)
        if peer is not None and peer.state is PeerState.PENDING:
            self._drop_peer(peer)

    def leave_task(self, task_id: str, host_id: str) -> bool:
        """A host no longer holds a task (deleted or evicted)."""
        task = self.tasks.get(task_id)
        peer = task.peers.get(host_id) if task else None
        if peer is None:
            return False
        self._drop_peer(peer)
        return True

    def task(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    def _task(self, a: Announcement, now: float) -> Task:
        task = self.tasks.get(a.task_id)
        if task is None:
            task = Task(
                id=a.task_id,
                url=a.url,
                tag=a.tag,
                application=a.application,
                piece_length=a.piece_length,
                content_length=a.content_length,
                total_pieces=a.total_pieces,
                created_at=now,
                updated_at=now,
            )
            self.tasks[a.task_id] = task
            return task
        task.updated_at = now
        if a.content_length is not None:
            task.content_length = a.content_length
        if a.piece_length is not None:
            task.piece_length = a.piece_length
        if a.total_pieces is not None:
            task.total_pieces = a.total_pieces
        return task

    def _seed_for(self, child: Peer) -> Host | None:
        seeds = [
            h
            for h in self.seeds.values()
            if h is not child.host and h.id not in child.blocked and self.alive(h)
        ]
        return min(seeds, key=lambda h: h.load, default=None)

    def _drop_peer(self, peer: Peer) -> None:
        task = peer.task
        if task.peers.get(peer.host.id) is peer:
            del task.peers[peer.host.id]
        if peer.host.peers.get(task.id) is peer:
            del peer.host.peers[task.id]
        if not task.peers:
            self.tasks.pop(task.id, None)
