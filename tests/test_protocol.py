"""Wire messages: piece-list deltas and scheduler messages survive their JSON form."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly.errors import InvalidInput
from damselfly.protocol.pieces import PieceList
from damselfly.protocol.scheduler import Announcement, AnnounceReply, HostInfo, PeerState


@given(
    order=st.permutations(list(range(40))),
    cut=st.integers(min_value=0, max_value=40),
    crcs=st.lists(st.integers(0, 2**32 - 1), min_size=40, max_size=40),
)
def test_piece_list_delta_rebuilds_the_whole_list(
    order: list[int], cut: int, crcs: list[int]
) -> None:
    full = PieceList("t", "running", 40 << 22, 4 << 20, pieces={n: crcs[n] for n in order})
    known = dict(list(full.pieces.items())[:cut])
    wire = json.loads(json.dumps(full.to_json(since=cut)))
    assert len(wire["pieces"]) == 40 - cut
    rebuilt = PieceList.from_json(wire, known=known)
    assert rebuilt.pieces == full.pieces
    assert list(rebuilt.pieces) == list(full.pieces)  # order kept for the next delta


@given(
    before=st.permutations(list(range(40))),
    after=st.permutations(list(range(40))),
    cut=st.integers(min_value=0, max_value=40),
    grown=st.integers(min_value=0, max_value=40),
)
def test_a_restarted_parents_list_is_sent_whole(
    before: list[int], after: list[int], cut: int, grown: int
) -> None:
    """A child counted `cut` pieces of the parent's old order; the parent restarted
    its download (a new epoch) and has finished `grown` pieces in another order. The
    child must end up with exactly what the parent has now, never more."""
    old = PieceList("t", "running", 40 << 22, 4 << 20, pieces={n: n for n in before}, epoch="a")
    new = PieceList("t", "running", 40 << 22, 4 << 20, pieces=dict.fromkeys(after[:grown], 0))
    new.epoch = "b"
    known = dict(list(old.pieces.items())[:cut])
    wire = json.loads(json.dumps(new.to_json(new.delta_for(cut, old.epoch))))
    rebuilt = PieceList.from_json(wire, known=known)
    assert rebuilt.pieces == new.pieces and rebuilt.epoch == "b"
    # the same epoch still gets a delta
    assert new.delta_for(min(cut, grown), "b") == min(cut, grown)


@given(finished=st.integers(min_value=0, max_value=2**600), bad=st.lists(st.text(min_size=1)))
def test_announcement_round_trip(finished: int, bad: list[str]) -> None:
    a = Announcement(
        task_id="t",
        host_id="h",
        peer_id="p",
        url="http://x/y",
        state=PeerState.SUCCEEDED,
        content_length=5,
        finished=finished,
        bad_parents=tuple(bad),
        request={"headers": {"A": "b"}},
    )
    assert Announcement.from_json(json.loads(json.dumps(a.to_json()))) == a


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "task_id is required"),
        ({"task_id": "t", "host_id": "h", "peer_id": "p", "url": "u", "finished": "zz"}, "hex"),
        ({"task_id": "t", "host_id": "h", "peer_id": "p", "url": "u", "state": "x"}, "state"),
        ({"task_id": "t", "host_id": "h", "peer_id": "p", "url": "u", "bad_parents": 3}, "list"),
        ({"task_id": "t", "host_id": "h", "peer_id": "p", "url": "u", "content_length": -1}, "0"),
    ],
)
def test_bad_announcements_are_refused_clearly(body: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Announcement.from_json(body)


def test_host_info_and_reply_round_trip() -> None:
    info = HostInfo("h", "name", "10.0.0.1", 65002, upload_slots=8, free_upload_slots=3)
    assert HostInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    with pytest.raises(InvalidInput, match="port"):
        HostInfo.from_json({**info.to_json(), "port": 70000})
    assert AnnounceReply.from_json({"parents": [], "back_to_source": True}).back_to_source
