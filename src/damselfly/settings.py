"""Settings models. Built once at the edge (CLI, service start) and passed down."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel, Field


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


class PeerSettings(BaseModel):
    """A peer's identity, store and download behaviour."""

    data_dir: Path = Field(description="Content, metadata and logs live here.")
    hostname: str = Field(
        default_factory=default_hostname,
        description="Host name in host and peer IDs; distinct per peer.",
    )
    ip: str = Field(default_factory=default_ip, description="Advertised IP address.")
    seed: bool = Field(default=False, description="Seed peer (host type super).")
    concurrency: int = Field(default=8, ge=1, le=64, description="Pieces fetched at once.")
    retry_attempts: int = Field(default=5, ge=1, description="Tries per origin request.")
    retry_backoff: float = Field(default=0.2, gt=0, description="First retry delay, doubling.")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(default=30.0, gt=0, description="Seconds without a byte.")
    lock_wait: float = Field(
        default=3600.0, ge=0, description="Seconds to wait while another process fetches a task."
    )
    ca_cert: Path | None = Field(default=None, description="CA bundle for HTTPS origins.")
    gc_ttl: float = Field(
        default=30 * 24 * 3600, gt=0, description="Evict tasks not accessed for this many seconds."
    )
    gc_high_watermark: float = Field(
        default=0.80, gt=0, le=1, description="Disk use that starts LRU eviction."
    )
    gc_low_watermark: float = Field(
        default=0.60, gt=0, le=1, description="Disk use LRU eviction goes down to."
    )

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"
