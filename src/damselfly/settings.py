"""Settings records. Built once at the edge (CLI, service start) and passed down.

Plain dataclasses: the peer CLI starts in ~0.25 s and pydantic alone added 0.12 s.
Each field's `help` metadata is what a generated configuration reference prints.
"""

from __future__ import annotations

import os
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


def _help(text: str, unit: str | None = None) -> dict[str, str]:
    """Field metadata; `unit` ("duration", "size") lets a config file write '30s', '4MiB'."""
    return {"help": text, "unit": unit} if unit else {"help": text}


def _outbound_allow(what: str) -> tuple[str, ...]:
    text = f"Networks {what} may reach (CIDRs; empty: any not denied)."
    return field(default=(), metadata=_help(text))


def _outbound_deny(what: str) -> tuple[str, ...]:
    text = f"Networks {what} may never reach (CIDRs); wins over the allow list."
    return field(default=(), metadata=_help(text))


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
    concurrency: int = field(
        default=8,
        metadata=_help(
            "Most pieces fetched at once (1-64). From an origin a download starts with 2 "
            "and doubles while that raises throughput."
        ),
    )
    retry_attempts: int = field(default=5, metadata=_help("Tries per origin request."))
    retry_backoff: float = field(
        default=0.2, metadata=_help("First retry delay in seconds, doubling.", "duration")
    )
    connect_timeout: float = field(default=10.0, metadata=_help("Seconds to connect.", "duration"))
    read_timeout: float = field(default=30.0, metadata=_help("Seconds without a byte.", "duration"))
    lock_wait: float = field(
        default=3600.0,
        metadata=_help("Seconds to wait while another process fetches a task.", "duration"),
    )
    ca_cert: Path | None = field(default=None, metadata=_help("CA bundle for HTTPS origins."))
    gc_ttl: float = field(
        default=30 * 24 * 3600,
        metadata=_help("Evict tasks not accessed for this many seconds.", "duration"),
    )
    gc_high_watermark: float = field(
        default=0.80, metadata=_help("Disk use (0-1) that starts LRU eviction.")
    )
    gc_low_watermark: float = field(
        default=0.60, metadata=_help("Disk use (0-1) LRU eviction goes down to.")
    )
    gc_interval: float = field(
        default=60.0,
        metadata=_help("Seconds between garbage collections in the daemon.", "duration"),
    )
    scheduler: str | None = field(
        default=None, metadata=_help("Scheduler URL, e.g. http://10.0.0.5:8002; none: no P2P.")
    )
    listen: str = field(default="0.0.0.0", metadata=_help("Address the upload server binds."))
    upload_port: int = field(
        default=0, metadata=_help("Upload server port (0: any free port; it is announced).")
    )
    advertise_port: int = field(
        default=0,
        metadata=_help(
            "Port announced to others when a proxy or NAT sits in front (0: upload_port)."
        ),
    )
    upload_slots: int = field(default=32, metadata=_help("Pieces uploaded at once (1-1024)."))
    upload_rate: int = field(
        default=0, metadata=_help("Upload cap in bytes per second for this peer (0: none).", "size")
    )
    endpoint: Path | None = field(
        default=None, metadata=_help("Local API unix socket (default <data_dir>/peer.sock).")
    )
    heartbeat_interval: float = field(
        default=5.0, metadata=_help("Seconds between heartbeats to the scheduler.", "duration")
    )
    control_from: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "Networks allowed to make this peer fetch or delete tasks (default: loopback "
            "and the scheduler's addresses)."
        ),
    )
    outbound_allow: tuple[str, ...] = _outbound_allow("origins")
    outbound_deny: tuple[str, ...] = _outbound_deny("origins")

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.concurrency <= 64:
            problems.append(f"concurrency {self.concurrency} is not within 1-64")
        if self.retry_attempts < 1:
            problems.append("retry_attempts must be at least 1")
        if not 1 <= self.upload_slots <= 1024:
            problems.append(f"upload_slots {self.upload_slots} is not within 1-1024")
        if self.upload_rate < 0:
            problems.append("upload_rate must not be negative")
        if not 0 <= self.upload_port <= 65535:
            problems.append(f"upload_port {self.upload_port} is not a port number")
        if not 0 <= self.advertise_port <= 65535:
            problems.append(f"advertise_port {self.advertise_port} is not a port number")
        if self.scheduler is not None and not self.scheduler.startswith(("http://", "https://")):
            problems.append(f"scheduler {self.scheduler!r} must be an http(s) URL")
        for name in (
            "retry_backoff",
            "connect_timeout",
            "read_timeout",
            "gc_ttl",
            "heartbeat_interval",
            "gc_interval",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if not 0 < self.gc_low_watermark <= self.gc_high_watermark <= 1:
            problems.append("watermarks need 0 < low <= high <= 1")
        problems += _network_problems(
            outbound_allow=self.outbound_allow,
            outbound_deny=self.outbound_deny,
            control_from=self.control_from,
        )
        if problems:
            raise InvalidInput("invalid peer settings: " + "; ".join(problems))

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def socket_path(self) -> Path:
        return self.endpoint or default_endpoint(self.data_dir)


def default_endpoint(data_dir: Path) -> Path:
    return data_dir / "peer.sock"


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """Where the scheduler listens and how it chooses parents."""

    data_dir: Path = field(metadata=_help("Logs live here."))
    listen: str = field(default="0.0.0.0", metadata=_help("Address the API binds."))
    port: int = field(default=8002, metadata=_help("API port (0: any free port)."))
    host_ttl: float = field(
        default=30.0,
        metadata=_help("Seconds without a heartbeat before a host is dropped.", "duration"),
    )
    max_parents: int = field(default=4, metadata=_help("Parents handed out at a time (1-20)."))
    candidate_sample: int = field(
        default=40, metadata=_help("Candidates scored per parent selection.")
    )
    manager: str | None = field(
        default=None, metadata=_help("Manager URL to register with (none: stand alone).")
    )
    cluster_id: int = field(default=1, metadata=_help("Scheduler cluster to join."))
    manager_token: str | None = field(
        default=None, metadata=_help("API token (root) used to register with the manager.")
    )
    advertise_ip: str = field(
        default_factory=default_ip, metadata=_help("IP the manager tells others to use.")
    )
    hostname: str = field(default_factory=default_hostname, metadata=_help("Host name."))

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not a port number")
        if self.host_ttl <= 0:
            problems.append("host_ttl must be positive")
        if not 1 <= self.max_parents <= 20:
            problems.append(f"max_parents {self.max_parents} is not within 1-20")
        if self.candidate_sample < self.max_parents:
            problems.append("candidate_sample must be at least max_parents")
        if self.manager is not None and not self.manager.startswith(("http://", "https://")):
            problems.append(f"manager {self.manager!r} must be an http(s) URL")
        if self.manager is not None and not self.manager_token:
            problems.append("registering with a manager needs a manager token")
        if problems:
            raise InvalidInput("invalid scheduler settings: " + "; ".join(problems))

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def _network_problems(**lists: tuple[str, ...]) -> list[str]:
    """One problem per list (by its setting's name) that holds something not a network."""
    from damselfly.netpolicy import parse_networks

    problems = []
    for name, values in lists.items():
        try:
            parse_networks(values, name)
        except InvalidInput as exc:
            problems.append(str(exc))
    return problems


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


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """Where the manager listens and keeps its database."""

    data_dir: Path = field(metadata=_help("The SQLite database and root's token live here."))
    listen: str = field(default="0.0.0.0", metadata=_help("Address the API binds."))
    port: int = field(default=8080, metadata=_help("API port (0: any free port)."))
    database_url: str | None = field(
        default=None,
        metadata=_help("SQLAlchemy URL (postgresql+psycopg://...); default SQLite in data_dir."),
    )
    redis_url: str | None = field(
        default=None, metadata=_help("Job queue on Redis (redis://...); default SQLite.")
    )
    job_workers: int = field(
        default=4, metadata=_help("Jobs run at once here (0-64; 0: only `damselfly worker`s).")
    )
    secret_key_file: Path | None = field(
        default=None,
        metadata=_help(
            "Key sealing credentials in job args (default data_dir/manager/secret.key)."
        ),
    )
    registry_ca_cert: Path | None = field(
        default=None, metadata=_help("CA bundle for HTTPS registries (image jobs).")
    )
    job_lease: float = field(
        default=30.0,
        metadata=_help(
            "Seconds a job's process may go silent before others take it back.", "duration"
        ),
    )
    outbound_allow: tuple[str, ...] = _outbound_allow("registry lookups (image jobs)")
    outbound_deny: tuple[str, ...] = _outbound_deny("registry lookups (image jobs)")

    def __post_init__(self) -> None:
        for problem in _network_problems(
            outbound_allow=self.outbound_allow, outbound_deny=self.outbound_deny
        ):
            raise InvalidInput(f"invalid manager settings: {problem}")
        if not 1 <= self.job_lease <= 3600:
            raise InvalidInput("invalid manager settings: job_lease must be within 1-3600 s")
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"invalid manager settings: port {self.port} is not a port number")
        if not 0 <= self.job_workers <= 64:
            raise InvalidInput("invalid manager settings: job_workers must be within 0-64")
        if self.database_url is not None and not self.database_url.startswith(
            ("sqlite", "postgresql")
        ):
            raise InvalidInput(
                "invalid manager settings: database_url must be sqlite:// or postgresql://"
            )


def default_media_workers() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Where media comes from and goes to, and how much runs at once."""

    data_dir: Path = field(metadata=_help("Uploads and the URL-input cache live here."))
    input_roots: tuple[Path, ...] = field(
        default=(), metadata=_help("Directories a task may read input paths from.")
    )
    output_roots: tuple[Path, ...] = field(
        default=(), metadata=_help("Directories a task may write outputs under.")
    )
    workers: int = field(
        default_factory=default_media_workers,
        metadata=_help("Media tasks run at once (default: half the cores)."),
    )
    peer_endpoint: Path | None = field(
        default=None, metadata=_help("Peer daemon socket that fetches URL inputs (P2P cache).")
    )
    webhook_key: str = field(default="", metadata=_help("Signs webhooks: md5(timestamp + key)."))
    job_lease: float = field(
        default=30.0,
        metadata=_help(
            "Seconds a task's worker may go silent before others take it back.", "duration"
        ),
    )
    outbound_allow: tuple[str, ...] = _outbound_allow("webhooks")
    outbound_deny: tuple[str, ...] = _outbound_deny("webhooks")

    def __post_init__(self) -> None:
        for problem in _network_problems(
            outbound_allow=self.outbound_allow, outbound_deny=self.outbound_deny
        ):
            raise InvalidInput(f"invalid media settings: {problem}")
        if not 1 <= self.job_lease <= 3600:
            raise InvalidInput("invalid media settings: job_lease must be within 1-3600 s")
        if not 0 <= self.workers <= 64:
            raise InvalidInput("invalid media settings: workers must be within 0-64")

    @property
    def uploads(self) -> Path:
        return self.data_dir / "media" / "uploads"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "media" / "cache"
