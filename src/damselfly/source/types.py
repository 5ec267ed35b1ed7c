"""What every back-to-source client reports, free of any HTTP library."""

from __future__ import annotations

from dataclasses import dataclass


class RangeNotSupported(Exception):
    """The origin answered a ranged request with the whole body."""


@dataclass(frozen=True, slots=True)
class SourceStat:
    content_length: int | None
    supports_range: bool
    etag: str = ""
    last_modified: str = ""
