"""Hosts in network namespaces the test creates: one bridge, and per host a namespace
with a veth to it and its own IP. Everything made is removed at close.

Needs root (or CAP_NET_ADMIN), `ip` and `nsenter`; `unavailable()` says why not, for a
clean skip.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    if shutil.which("nsenter") is None:
        return "`nsenter` (util-linux) is not installed"
    probe = f"damselfly-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode:
        return f"network namespaces are refused here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    rng = random.Random()
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{rng.randint(128, 250)}.{rng.randint(0, 255)}.0/24")
        if f" {net.network_address}"[:-1] not in used and str(net)[:-4] not in used:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test bridge")


@dataclass
class Host:
    name: str  # the namespace
    ip: str

    def cmd(self, argv: list[str]) -> list[str]:
        """`argv`, run inside this host's network namespace. Not `ip netns exec`: it
        also makes a mount namespace and mounts a sysfs in it, a step our processes
        do not need and one more that can fail."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--", *argv]


@dataclass
class Lan:
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000:05d}")
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    hosts: list[Host] = field(default_factory=list)
    made: bool = False

    @property
    def bridge(self) -> str:
        return f"dfbr{self.tag}"  # interface names: 15 characters at most

    @property
    def gateway(self) -> str:
        """The bridge's own address, in the test's (root) namespace."""
        return str(self.subnet.network_address + 1)

    def start(self) -> Lan:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made = True
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 1
        netns = f"damselfly-{self.tag}-{name}"
        outside, inside = f"dfv{self.tag}{index}", f"dfi{self.tag}{index}"
        ip = str(self.subnet.network_address + 10 + index)
        _ip("netns", "add", netns)
        host = Host(netns, ip)
        self.hosts.append(host)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("link", "set", inside, "name", "eth0", netns=netns)
        _ip("addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("route", "add", "default", "via", self.gateway, netns=netns)
        return host

    def close(self) -> None:
        for index, host in enumerate(self.hosts, 1):
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
            subprocess.run(["ip", "link", "del", f"dfv{self.tag}{index}"], capture_output=True)
        if self.made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.hosts.clear()
