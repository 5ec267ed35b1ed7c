"""Peer <-> scheduler messages and their JSON form.

Finished-piece bitmaps travel as hex strings of an integer whose bit n is piece n.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from damselfly.errors import InvalidInput

E = TypeVar("E", bound=StrEnum)


class HostType(StrEnum):
    NORMAL = "normal"
    SUPER = "super"  # a seed peer


class PeerState(StrEnum):
    PENDING = "pending"  # a seed peer told to fetch; it has not announced yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HostInfo:
    id: str
    hostname: str
    ip: str
    port: int  # the upload server: piece bytes, piece lists, task stat/delete/trigger
    type: HostType = HostType.NORMAL
    upload_slots: int = 32
    free_upload_slots: int = 32

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "ip": self.ip,
            "port": self.port,
            "type": self.type.value,
            "upload_slots": self.upload_slots,
            "free_upload_slots": self.free_upload_slots,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostInfo:
        return cls(
            id=_text(data, "id"),
            hostname=_text(data, "hostname"),
            ip=_text(data, "ip"),
            port=_int(data, "port", 1, 65535),
            type=_enum(HostType, data.get("type", "normal"), "type"),
            upload_slots=_int(data, "upload_slots", 0, 1 << 16, default=32),
            free_upload_slots=_int(data, "free_upload_slots", -(1 << 16), 1 << 16, default=32),
        )


@dataclass(frozen=True, slots=True)
class Announcement:
    """A peer telling the scheduler where it stands on a task."""

    task_id: str
    host_id: str
    peer_id: str
    url: str
    state: PeerState = PeerState.RUNNING
    tag: str = ""
    application: str = ""
    piece_length: int | None = None
    content_length: int | None = None
    total_pieces: int | None = None
    finished: int = 0
    need_parents: bool = False
    bad_parents: tuple[str, ...] = ()
    # what a seed needs to fetch the task itself: URL options and origin headers
    request: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "host_id": self.host_id,
            "peer_id": self.peer_id,
            "url": self.url,
            "state": self.state.value,
            "tag": self.tag,
            "application": self.application,
            "piece_length": self.piece_length,
            "content_length": self.content_length,
            "total_pieces": self.total_pieces,
            "finished": format(self.finished, "x"),
            "need_parents": self.need_parents,
            "bad_parents": list(self.bad_parents),
            "request": dict(self.request),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Announcement:
        try:
            finished = int(str(data.get("finished") or "0"), 16)
        except ValueError:
            raise InvalidInput("finished must be a hex bitmap of finished pieces") from None
        bad = data.get("bad_parents") or []
        request = data.get("request") or {}
        if not isinstance(bad, list) or not all(isinstance(b, str) for b in bad):
            raise InvalidInput("bad_parents must be a list of host IDs")
        if not isinstance(request, dict):
            raise InvalidInput("request must be an object")
        return cls(
            task_id=_text(data, "task_id"),
            host_id=_text(data, "host_id"),
            peer_id=_text(data, "peer_id"),
            url=_text(data, "url"),
            state=_enum(PeerState, data.get("state", "running"), "state"),
            tag=str(data.get("tag") or ""),
            application=str(data.get("application") or ""),
            piece_length=_optional_int(data, "piece_length"),
            content_length=_optional_int(data, "content_length"),
            total_pieces=_optional_int(data, "total_pieces"),
            finished=finished,
            need_parents=bool(data.get("need_parents", False)),
            bad_parents=tuple(bad),
            request=request,
        )


@dataclass(frozen=True, slots=True)
class ParentInfo:
    """A parent handed to a child: where to fetch pieces of the task from."""

    host_id: str
    peer_id: str
    hostname: str
    ip: str
    port: int
    type: HostType
    state: PeerState
    finished_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "peer_id": self.peer_id,
            "hostname": self.hostname,
            "ip": self.ip,
            "port": self.port,
            "type": self.type.value,
            "state": self.state.value,
            "finished_count": self.finished_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParentInfo:
        return cls(
            host_id=_text(data, "host_id"),
            peer_id=_text(data, "peer_id"),
            hostname=_text(data, "hostname"),
            ip=_text(data, "ip"),
            port=_int(data, "port", 1, 65535),
            type=_enum(HostType, data.get("type", "normal"), "type"),
            state=_enum(PeerState, data.get("state", "running"), "state"),
            finished_count=_int(data, "finished_count", 0, 1 << 40, default=0),
        )


@dataclass(frozen=True, slots=True)
class AnnounceReply:
    parents: list[ParentInfo]
    back_to_source: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "parents": [p.to_json() for p in self.parents],
            "back_to_source": self.back_to_source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnnounceReply:
        return cls(
            parents=[ParentInfo.from_json(p) for p in data.get("parents") or []],
            back_to_source=bool(data.get("back_to_source", False)),
        )


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key} is required and must be a non-empty string")
    return value


def _int(
    data: Mapping[str, Any], key: str, low: int, high: int, *, default: int | None = None
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{key} must be an integer within {low}..{high}")
    return value


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    return _int(data, key, 0, 1 << 62)


def _enum(kind: type[E], value: object, key: str) -> E:
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(f"{key} must be one of {allowed}") from None
