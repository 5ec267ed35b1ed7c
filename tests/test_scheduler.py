"""The scheduler's decisions, in process: registration, parent selection, seeds,
back to source, failures, expiry; property tests over random swarms."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from damselfly.protocol.scheduler import Announcement, HostInfo, HostType, PeerState
from damselfly.scheduler.selection import SelectionPolicy, creates_cycle
from damselfly.scheduler.service import Scheduler, UnknownHost


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_parents: int = 4) -> tuple[Scheduler, Clock]:
    clock = Clock()
    policy = SelectionPolicy(max_parents=max_parents, host_ttl=30)
    return Scheduler(policy, clock=clock, rng=random.Random(7)), clock


def host(s: Scheduler, name: str, *, seed: bool = False, free: int = 32) -> str:
    s.register_host(
        HostInfo(
            id=name,
            hostname=name,
            ip="127.0.0.1",
            port=1000 + len(s.hosts),
            type=HostType.SUPER if seed else HostType.NORMAL,
            upload_slots=32,
            free_upload_slots=free,
        )
    )
    return name


def announce(s: Scheduler, task: str, who: str, **kw: object):
    fields = {"need_parents": True, **kw}
    return s.announce(
        Announcement(task_id=task, host_id=who, peer_id=f"{who}-p", url="u", **fields)
    )


def test_register_reports_new_hosts_once() -> None:
    s, _ = make()
    assert s.register_host(HostInfo("a", "a", "127.0.0.1", 1)) is True
    assert s.register_host(HostInfo("a", "a", "127.0.0.1", 1)) is False


def test_unknown_host_must_register() -> None:
    s, _ = make()
    try:
        announce(s, "t", "ghost")
    except UnknownHost as exc:
        assert "ghost" in str(exc)
    else:
        raise AssertionError("announce from an unregistered host was accepted")


def test_no_holder_no_seed_goes_back_to_source() -> None:
    s, _ = make()
    host(s, "a")
    result = announce(s, "t", "a")
    assert result.back_to_source and not result.parents and result.trigger_seed is None


def test_no_holder_triggers_seed_and_hands_it_out() -> None:
    s, _ = make()
    host(s, "a")
    host(s, "b")
    host(s, "seed", seed=True)
    first = announce(s, "t", "a")
    assert first.trigger_seed is not None and first.trigger_seed.id == "seed"
    assert [p.host.id for p in first.parents] == ["seed"]
    assert first.parents[0].state is PeerState.PENDING
    # the next child is not told to trigger again; it gets the seed (and a)
    second = announce(s, "t", "b")
    assert second.trigger_seed is None
    assert {p.host.id for p in second.parents} == {"seed", "a"}
    # the seed announcing itself replaces its placeholder; it goes to the source
    own = announce(s, "t", "seed")
    assert own.back_to_source and s.tasks["t"].peers["seed"].state is PeerState.RUNNING


def test_failed_seed_trigger_sends_children_to_source() -> None:
    s, _ = make()
    host(s, "a")
    host(s, "seed", seed=True)
    announce(s, "t", "a")
    s.seed_failed("t", "seed")
    assert "seed" not in s.tasks["t"].peers
    again = announce(s, "t", "a")
    assert again.back_to_source and again.trigger_seed is None


def test_never_same_host_blocked_or_dead_parents() -> None:
    s, clock = make()
    for name in ("child", "good", "blocked", "stale"):
        host(s, name)
    for name in ("good", "blocked", "stale"):
        announce(s, "t", name, state=PeerState.SUCCEEDED, finished=0b1111, total_pieces=4)
    clock.now += 20
    host(s, "child")
    host(s, "good")
    host(s, "blocked")  # "stale" stops heartbeating
    clock.now += 15
    result = announce(s, "t", "child", bad_parents=("blocked",))
    assert [p.host.id for p in result.parents] == ["good"]
    assert s.tasks["t"].peers["blocked"].failures == 1


def test_prefers_idle_and_complete_parents() -> None:
    s, _ = make(max_parents=2)
    host(s, "child")
    host(s, "busy", free=0)
    host(s, "idle", free=32)
    host(s, "half", free=32)
    announce(s, "t", "busy", state=PeerState.SUCCEEDED, finished=0b1111, total_pieces=4)
    announce(s, "t", "idle", state=PeerState.SUCCEEDED, finished=0b1111, total_pieces=4)
    announce(s, "t", "half", finished=0b0011, total_pieces=4)
    result = announce(s, "t", "child", total_pieces=4)
    assert [p.host.id for p in result.parents] == ["idle", "half"]


def test_failed_peer_is_forgotten_and_leave_removes() -> None:
    s, _ = make()
    host(s, "a")
    host(s, "b")
    announce(s, "t", "a", state=PeerState.SUCCEEDED)
    announce(s, "t", "b", state=PeerState.FAILED)
    assert set(s.tasks["t"].peers) == {"a"}
    assert s.leave_task("t", "a") is True
    assert "t" not in s.tasks


def test_expired_and_removed_hosts_lose_their_peers() -> None:
    s, clock = make()
    host(s, "a")
    host(s, "b")
    announce(s, "t", "a", state=PeerState.SUCCEEDED)
    announce(s, "t", "b", state=PeerState.SUCCEEDED)
    clock.now += 31
    host(s, "b")
    assert s.expire_hosts() == ["a"]
    assert set(s.tasks["t"].peers) == {"b"}
    assert s.remove_host("b") is True
    assert s.tasks == {} and s.hosts == {}


@settings(max_examples=200, deadline=None)
@given(
    hosts=st.integers(min_value=2, max_value=12),
    steps=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 15), st.booleans()), min_size=1, max_size=60
    ),
    seeded=st.booleans(),
)
def test_selection_never_same_host_and_never_a_cycle(
    hosts: int, steps: list[tuple[int, int, bool]], seeded: bool
) -> None:
    s, _ = make()
    names = [host(s, f"h{n}", seed=seeded and n == 0) for n in range(hosts)]
    for who, bits, done in steps:
        name = names[who % hosts]
        state = PeerState.SUCCEEDED if done else PeerState.RUNNING
        result = announce(s, "t", name, finished=bits, total_pieces=4, state=state)
        child = s.tasks["t"].peers.get(name) if "t" in s.tasks else None
        for parent in result.parents:
            assert parent.host.id != name
            assert child is not None and not creates_cycle(child, parent)
        assert len(result.parents) <= s.policy.max_parents
        # the parent graph stays acyclic: no peer is its own ancestor
        peers = s.tasks["t"].peers if "t" in s.tasks else {}
        for peer in peers.values():
            assert not _reaches(peers, peer.parents, peer.host.id)


def _reaches(peers: dict, start: tuple[str, ...], target: str) -> bool:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        host_id = stack.pop()
        if host_id == target:
            return True
        if host_id in seen:
            continue
        seen.add(host_id)
        if host_id in peers:
            stack.extend(peers[host_id].parents)
    return False


def test_recent_failures_rank_a_parent_last_until_forgiven() -> None:
    s, clock = make(max_parents=2)
    for name in ("child", "other", "flaky", "good"):
        host(s, name)
    announce(s, "t", "flaky", state=PeerState.SUCCEEDED, finished=0b1111, total_pieces=4)
    announce(s, "t", "good", state=PeerState.SUCCEEDED, finished=0b1111, total_pieces=4)
    announce(s, "t", "other", bad_parents=("flaky",), total_pieces=4)
    result = announce(s, "t", "child", total_pieces=4)
    assert result.parents[0].host.id == "good"
    clock.now += 301
    for name in ("child", "flaky", "good"):
        host(s, name)
    s.tasks["t"].peers["good"].host.free_upload_slots = 0  # now busier than flaky
    result = announce(s, "t", "child", total_pieces=4)
    assert result.parents[0].host.id == "flaky"
