"""Parent selection: which peers a child should fetch pieces from.

Candidates hold (or are fetching) the task on another host, are alive, not blocked
by the child, and would not close a cycle. They are scored by free upload slots,
finished pieces and recent failures; the top few are handed out and the child asks
again as its download goes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from damselfly.protocol.scheduler import PeerState
from damselfly.scheduler.resources import Peer

# How far up the parent graph the cycle check walks; past this a candidate is
# refused rather than risk a loop.
_CYCLE_WALK_LIMIT = 256


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    max_parents: int = 4
    candidate_sample: int = 40
    host_ttl: float = 30.0
    failure_window: float = 300.0  # reports of bad pieces older than this are forgiven


def score(candidate: Peer, total_pieces: int | None, now: float, policy: SelectionPolicy) -> float:
    """Higher is better: idle uploaders with many pieces and few recent failures."""
    if candidate.state is PeerState.SUCCEEDED:
        have = 1.0
    elif total_pieces:
        have = candidate.finished_count / total_pieces
    else:
        have = 0.0
    idle = 1.0 - candidate.host.load
    failures = candidate.recent_failures(now, policy.failure_window)
    return 0.45 * idle + 0.45 * have - 0.3 * min(failures, 3)


def creates_cycle(child: Peer, candidate: Peer) -> bool:
    """True if `child` is already an ancestor of `candidate` (or we cannot tell)."""
    peers = child.task.peers
    seen: set[str] = set()
    stack = [candidate.host.id]
    while stack:
        host_id = stack.pop()
        if host_id == child.host.id:
            return True
        if host_id in seen:
            continue
        seen.add(host_id)
        if len(seen) > _CYCLE_WALK_LIMIT:
            return True
        peer = peers.get(host_id)
        if peer is not None:
            stack.extend(peer.parents)
    return False


def select_parents(
    child: Peer, now: float, policy: SelectionPolicy, rng: random.Random
) -> list[Peer]:
    task = child.task
    pool = [p for p in task.peers.values() if p is not child]
    if len(pool) > policy.candidate_sample:
        # finished peers first: they can serve anything
        done = [p for p in pool if p.state is PeerState.SUCCEEDED]
        rest = [p for p in pool if p.state is not PeerState.SUCCEEDED]
        pool = rng.sample(done, min(len(done), policy.candidate_sample))
        if len(pool) < policy.candidate_sample:
            pool += rng.sample(rest, min(len(rest), policy.candidate_sample - len(pool)))
    usable: list[Peer] = []
    for candidate in pool:
        if candidate.state is PeerState.FAILED:
            continue
        if candidate.host is child.host or candidate.host.id in child.blocked:
            continue
        if now - candidate.host.last_seen > policy.host_ttl:
            continue
        if candidate.state is PeerState.SUCCEEDED and child.state is PeerState.SUCCEEDED:
            continue
        if creates_cycle(child, candidate):
            continue
        usable.append(candidate)
    usable.sort(key=lambda p: score(p, task.total_pieces, now, policy), reverse=True)
    return usable[: policy.max_parents]
