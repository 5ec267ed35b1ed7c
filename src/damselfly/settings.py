"""Settings records. Built once at the edge (CLI, service start) and passed down.

Plain dataclasses: the peer CLI starts in ~0.25 s and pydantic alone added 0.12 s.
Each field's `help` metadata is what a generated configuration reference prints.
"""

from __future__ import annotations

import socket
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from damselfly.errors import InvalidInput


def default_hostname() -> str:
    return socket.gethostname()


def default_ip() -> str:
    """The first non-loopback IPv4 address of this host's name, else 127.0.0.1."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """A peer's identity, store and download behaviour."""

    data_dir: Path = field(metadata=_help("Content, metadata and logs live here."))
    hostname: str = field(
        default_factory=default_hostname,
        metadata=_help("Host name in host and peer IDs; distinct per peer."),
    )
    ip: str = field(default_factory=default_ip, metadata=_help("Advertised IP address."))
    seed: bool = field(default=False, metadata=_help("Seed peer (host type super)."))
    concurrency: int = field(default=8, metadata=_help("Pieces fetched at once (1-64)."))
    retry_attempts: int = field(default=5, metadata=_help("Tries per origin request."))
    retry_backoff: float = field(
        default=0.2, metadata=_help("First retry delay in seconds, doubling.")
    )
    connect_timeout: float = field(default=10.0, metadata=_help("Seconds to connect."))
    read_timeout: float = field(default=30.0, metadata=_help("Seconds without a byte."))
    lock_wait: float = field(
        default=3600.0, metadata=_help("Seconds to wait while another process fetches a task.")
    )
    ca_cert: Path | None = field(default=None, metadata=_help("CA bundle for HTTPS origins."))
    gc_ttl: float = field(
        default=30 * 24 * 3600, metadata=_help("Evict tasks not accessed for this many seconds.")
    )
    gc_high_watermark: float = field(
        default=0.80, metadata=_help("Disk use (0-1) that starts LRU eviction.")
    )
    gc_low_watermark: float = field(
        default=0.60, metadata=_help("Disk use (0-1) LRU eviction goes down to.")
    )

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.concurrency <= 64:
            problems.append(f"concurrency {self.concurrency} is not within 1-64")
        if self.retry_attempts < 1:
            problems.append("retry_attempts must be at least 1")
        for name in ("retry_backoff", "connect_timeout", "read_timeout", "gc_ttl"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if not 0 < self.gc_low_watermark <= self.gc_high_watermark <= 1:
            problems.append("watermarks need 0 < low <= high <= 1")
        if problems:
            raise InvalidInput("invalid peer settings: " + "; ".join(problems))

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def describe(settings_type: type) -> list[tuple[str, str, str]]:
    """(name, default, help) for each field: the source of a configuration reference."""
    rows = []
    for f in fields(settings_type):
        if f.default_factory is not MISSING:
            default = f"({f.default_factory.__name__})"
        else:
            default = "" if f.default is MISSING else repr(f.default)
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
