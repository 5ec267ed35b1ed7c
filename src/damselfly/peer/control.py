"""Who may steer this peer through its upload port: fetch a task, delete one.

Only the scheduler does that (seeding, deleting everywhere). Anyone else who can reach
the port could otherwise make the peer fetch a URL of their choosing or drop its cache.
By default the callers allowed are loopback and the addresses the scheduler's host name
resolves to (looked up again at most once a minute); `control_from` replaces that
with explicit networks.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

from damselfly.netpolicy import Network, parse_networks
from damselfly.settings import PeerSettings

_RESOLVE_EVERY = 60.0


class ControlGuard:
    def __init__(self, settings: PeerSettings) -> None:
        self.explicit = parse_networks(settings.control_from, "control_from")
        self.scheduler = urlsplit(settings.scheduler).hostname if settings.scheduler else None
        self._resolved: tuple[Network, ...] = ()
        self._resolved_at = -_RESOLVE_EVERY

    def refusal(self, remote: str | None) -> str | None:
        """Why a control call from `remote` is refused, or None when it may go on."""
        if not remote:
            return "the caller's address is unknown"
        ip = ipaddress.ip_address(remote.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if self.explicit:
            allowed = self.explicit
            rule = "control_from"
        else:
            if ip.is_loopback:
                return None
            allowed = self._scheduler_addresses()
            rule = f"the scheduler's addresses ({self.scheduler or 'no scheduler'})"
        if any(ip.version == n.version and ip in n for n in allowed):
            return None
        return f"{ip} is not among {rule}"

    def _scheduler_addresses(self) -> tuple[Network, ...]:
        if self.scheduler is None:
            return ()
        now = time.monotonic()
        if now - self._resolved_at >= _RESOLVE_EVERY:
            try:
                infos = socket.getaddrinfo(self.scheduler, None, type=socket.SOCK_STREAM)
                self._resolved = parse_networks({str(i[4][0]) for i in infos}, "scheduler")
            except OSError:
                pass  # keep what we had: a DNS blip must not lock the scheduler out
            self._resolved_at = now
        return self._resolved
