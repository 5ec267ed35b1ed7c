"""Peers on separate hosts: network namespaces this test creates (a bridge; per host a
namespace, a veth and its own IP), and fault-injecting relays on some links (no netem
in these kernels): 50 ms each way, a reset every ~100 MiB, stalls."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from damselfly import ids
from tests.support.cluster import http_json, wait_for, wait_ready
from tests.support.fleet import SUPPORT, UPLOAD, Fleet, printed_port
from tests.support.netns import Lan, unavailable
from tests.support.processes import damselfly_cmd, write_random

SIZE = 256 << 20


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = unavailable()
    if reason:
        print(f"multi-host tests skipped: {reason}")
        pytest.skip(reason)
    lan = Lan().start()
    root = tmp_path_factory.mktemp("fleet")
    core = lan.add_host("core")
    fleet = Fleet(lan, root)
    scheduler_url = f"http://{core.ip}:8002"
    try:
        files = root / "origin-files"
        files.mkdir()
        origin = fleet.run(core, [sys.executable, str(SUPPORT / "origin.py"), "--root",
                                  str(files), "--lifetime", "600"], "origin")  # fmt: skip
        bad = ("--latency", "0.05", "--reset-every", "100MiB")
        # the origin is far away: 50 ms each way, resets, its uplink capped at 200 MB/s
        fleet.relay(core, f"127.0.0.1:{printed_port(origin)}", 8080, "origin-link", *bad,
                    "--rate", "200MB")  # fmt: skip
        scheduler = fleet.run(core, [*damselfly_cmd(), "scheduler", "--listen", core.ip,
                                     "--port", "8002", "--data-dir", str(root / "scheduler")],
                              "scheduler")  # fmt: skip
        wait_ready(scheduler, r"ready: http://")
        fleet.peer(core, "seed", scheduler_url, seed=True, faults=bad)
        for n in range(1, 7):
            faults = {2: bad, 4: bad, 6: (*bad, "--stall-every", "64MiB", "--stall", "1")}
            fleet.peer(lan.add_host(f"h{n}"), f"h{n}", scheduler_url, faults=faults.get(n, ()))
        yield fleet
        assert not fleet.tracebacks()
    finally:
        fleet.close()
        lan.close()


def test_hosts_join_with_their_own_addresses(fleet: Fleet) -> None:
    expected = {"seed", *(f"h{n}" for n in range(1, 7))}
    hosts: list[dict] = []

    def all_joined() -> bool:
        # a daemon says "ready" a moment before its first heartbeat registers it
        nonlocal hosts
        status, hosts = http_json("GET", f"http://{fleet.lan.hosts[0].ip}:8002/api/v1/hosts")
        return status == 200 and {h["hostname"] for h in hosts} >= expected

    assert wait_for(all_joined, timeout=10), hosts
    seen = {h["hostname"]: h for h in hosts}
    assert set(seen) == expected
    for name, (host, _) in fleet.peers.items():
        assert seen[name]["ip"] == host.ip
        assert seen[name]["id"] == ids.host_id(host.ip, name, seed=name == "seed")
    assert seen["h2"]["port"] == 65000 and seen["h1"]["port"] == UPLOAD
    assert len({h["ip"] for h in hosts}) == 7


def test_256_mib_across_six_hosts_over_bad_links(fleet: Fleet) -> None:
    files = fleet.root / "origin-files"
    digest = write_random(files / "big.bin", SIZE, seed=2026)
    url = f"http://{fleet.lan.hosts[0].ip}:8080/files/big.bin"
    started = time.monotonic()
    gets = {}
    for name, (host, data) in fleet.peers.items():
        if name != "seed":
            argv = [*damselfly_cmd(), "get", url, "-O", str(data / "big.bin"), "--no-progress",
                    "--data-dir", str(data), "--timeout", "5m"]  # fmt: skip
            gets[name] = subprocess.Popen(
                host.cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
    try:
        for name, get in gets.items():
            _, err = get.communicate(timeout=300)
            assert get.returncode == 0, f"{name}: {err}"
    finally:
        for get in gets.values():
            if get.poll() is None:
                get.kill()
    took = time.monotonic() - started
    for name, (_, data) in fleet.peers.items():
        if name != "seed":
            got = hashlib.sha256((data / "big.bin").read_bytes()).hexdigest()
            assert got == digest, f"{name} has different bytes"
    faults = {
        path.parent.name: [json.loads(line)["event"] for line in path.read_text().splitlines()]
        for path in fleet.events
        if path.exists()
    }
    # the links every byte crossed did break: origin -> seed, and seed -> the fleet
    assert "reset" in faults["origin-link"] and "reset" in faults["seed"], faults
    stats = http_json("GET", f"http://{fleet.lan.hosts[0].ip}:8080/_stats")[1]
    from_origin = stats["body_bytes"].get("/files/big.bin", 0)
    assert from_origin < 1.5 * SIZE, f"the origin sent {from_origin / SIZE:.2f}x the file"
    print(f"256 MiB to 6 hosts over faulty links: {took:.1f}s; origin sent "
          f"{from_origin / SIZE:.2f}x the file; faults by link: {faults}")  # fmt: skip
