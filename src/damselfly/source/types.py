"""What every back-to-source client reports, free of any HTTP library."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class RangeNotSupported(Exception):
    """The origin answered a ranged request with the whole body."""


@dataclass(frozen=True, slots=True)
class SourceStat:
    content_length: int | None
    supports_range: bool
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True, slots=True)
class Document:
    """A small response read whole: a manifest, an API answer."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
