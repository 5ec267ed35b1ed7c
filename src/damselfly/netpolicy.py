"""Where this process may connect out to: origins, registries, webhooks.

A policy is two lists of networks. A deny entry always wins; when the allow list is
not empty, an address must also be on it. Every address a name resolves to is checked
before connecting, and the address the socket reached after, so a name that resolves
(or re-resolves) into a denied network is refused all the same.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from damselfly.errors import InvalidInput, OutboundDenied

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], what: str) -> tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidInput(
                f"invalid {what} entry {value!r}: use an address or a network, e.g. "
                "10.0.0.0/8, 192.168.1.5, fd00::/8"
            ) from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> OutboundPolicy:
        return cls(parse_networks(allow, "outbound_allow"), parse_networks(deny, "outbound_deny"))

    @property
    def open(self) -> bool:
        return not self.allow and not self.deny

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be reached, or None when it may."""
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        for network in self.deny:
            if ip.version == network.version and ip in network:
                return f"{ip} is in {network} on the outbound deny list"
        if self.allow and not any(ip.version == n.version and ip in n for n in self.allow):
            return f"{ip} is on no network of the outbound allow list"
        return None

    def check(self, address: str, host: str) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise OutboundDenied(
                f"connection to {host} refused by this host's outbound policy: {reason}; "
                "change outbound_allow / outbound_deny if it should be reachable"
            )


def policy_of(settings: Any) -> OutboundPolicy:
    """The policy of a settings record with `outbound_allow` and `outbound_deny`."""
    return OutboundPolicy.parse(settings.outbound_allow, settings.outbound_deny)


def _precheck(policy: OutboundPolicy, host: str, port: int) -> None:
    """Before any packet: every address the name has must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # urllib3 reports the failed lookup in its own words
    for info in infos:
        policy.check(str(info[4][0]), host)


def _checked(policy: OutboundPolicy, sock: socket.socket, host: str) -> socket.socket:
    try:
        address = sock.getpeername()[0]
        policy.check(address, host)
    except BaseException:
        sock.close()
        raise
    return sock


def pool_manager(policy: OutboundPolicy, **kwargs: Any) -> urllib3.PoolManager:
    """A urllib3 PoolManager whose every new connection is checked against `policy`."""
    manager = urllib3.PoolManager(**kwargs)
    if policy.open:
        return manager

    # checked before connecting (no packet to a denied network) and after (the name
    # may resolve differently the second time)
    class Connection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            _precheck(policy, self._dns_host, self.port)
            return _checked(policy, super()._new_conn(), self.host)

    class TLSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            _precheck(policy, self._dns_host, self.port)
            return _checked(policy, super()._new_conn(), self.host)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    manager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}
    return manager
