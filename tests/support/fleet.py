"""Processes on hosts in network namespaces (support/netns.py): start them, put
fault-injecting relays in front of them, stop them all."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cluster import wait_ready
from tests.support.netns import Host, Lan
from tests.support.processes import damselfly_cmd, stop

SUPPORT = Path(__file__).parent
UPLOAD, RELAYED = 65002, 65000  # fresh namespaces: every port is free


def printed_port(process: subprocess.Popen[str]) -> int:
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line, f"{process.args} did not start"
    return int(json.loads(line)["port"])


@dataclass
class Fleet:
    lan: Lan
    root: Path
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    peers: dict[str, tuple[Host, Path]] = field(default_factory=dict)
    events: list[Path] = field(default_factory=list)

    def run(self, host: Host, argv: list[str], name: str) -> subprocess.Popen[str]:
        """`argv` in `host`'s namespace; stderr to <root>/<name>/stderr.log."""
        log = self.root / name / "stderr.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as err:
            process = subprocess.Popen(
                host.cmd(argv), stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.processes[name] = process
        return process

    def damselfly(self, host: Host, name: str, *args: str, ready: str) -> subprocess.Popen[str]:
        process = self.run(host, [*damselfly_cmd(), *args], name)
        wait_ready(process, ready, self.root / name / "stderr.log")
        return process

    def relay(self, host: Host, target: str, port: int, name: str, *faults: str) -> int:
        events = self.root / name / "relay-events.jsonl"
        events.parent.mkdir(parents=True, exist_ok=True)
        self.events.append(events)
        argv = [sys.executable, str(SUPPORT / "relay.py"), "--target", target, "--listen",
                host.ip, "--port", str(port), "--events", str(events), "--lifetime", "900",
                *faults]  # fmt: skip
        return printed_port(self.run(host, argv, f"{name}-relay"))

    def peer(
        self,
        host: Host,
        name: str,
        scheduler: str,
        *,
        seed: bool = False,
        faults: tuple[str, ...] = (),
    ) -> None:
        data = self.root / name
        argv = ["peer", "--scheduler", scheduler, "--data-dir", str(data), "--hostname", name,
                "--ip", host.ip, "--heartbeat-interval", "0.5",
                *(["--seed"] if seed else [])]  # fmt: skip
        if faults:  # others reach this host's pieces through a faulty link only
            self.relay(host, f"127.0.0.1:{UPLOAD}", RELAYED, name, *faults)
            argv += ["--listen", "127.0.0.1", "--port", str(UPLOAD),
                     "--advertise-port", str(RELAYED)]  # fmt: skip
        else:
            argv += ["--listen", host.ip, "--port", str(UPLOAD)]
        self.damselfly(host, name, *argv, ready=r"peer (\S+) ready")
        self.peers[name] = (host, data)

    def tracebacks(self) -> list[str]:
        return [str(p) for p in self.root.glob("*/stderr.log") if "Traceback" in p.read_text()]

    def close(self) -> None:
        for process in reversed(list(self.processes.values())):
            stop(process)
