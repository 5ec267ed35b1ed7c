"""How many requests a download keeps in flight: the policy on modelled links, then
real origins and a real parent where more connections pay (a per-connection cap, a
slow round trip)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damselfly.peer.ramp import Ramp
from tests.support.processes import run_damselfly, sha256_file, stop, write_random

MiB = 1024 * 1024
STEP = 0.01  # seconds between the fetch loop's looks at the counters


def drive(ramp: Ramp, rate_of: Callable[[int], float], seconds: float) -> list[int]:
    """Run `ramp` against a link whose throughput depends on the worker count."""
    now, total, seen = 0.0, 0.0, []
    ramp.observe(now, 0)
    while now < seconds:
        now += STEP
        total += rate_of(ramp.target) * STEP
        ramp.piece_took(0.01)
        seen.append(ramp.observe(now, int(total)))
    return seen


def test_grows_to_the_maximum_while_each_step_pays() -> None:
    per_connection = 20e6  # an origin that caps every connection
    seen = drive(Ramp(maximum=8), lambda n: per_connection * n, 2.0)
    assert seen[0] == 2 and seen[-1] == 8
    assert sorted(set(seen)) == [2, 4, 8], "it doubles"


def test_steps_back_when_more_workers_do_not_pay_and_tries_again_later() -> None:
    ramp = Ramp(maximum=8)
    seen = drive(ramp, lambda n: 900e6 if n <= 2 else 850e6, 5.0)  # the cores are the limit
    assert seen[-1] == 2
    above = sum(1 for n in seen if n > 2) * STEP
    assert 0 < above < 1.0, f"{above:.2f}s of 5s spent above 2 workers"
    probes = sum(1 for a, b in pairwise(seen) if b > a)
    assert probes == 3, "one probe at the start, then one every retry_after (2 s)"


def test_keeps_a_step_that_pays_and_stops_where_growth_ends() -> None:
    seen = drive(Ramp(maximum=16), lambda n: 100e6 * min(n, 4), 3.5)  # 4 fill the link
    assert seen[-1] == 4
    assert max(seen) == 8, "it tried 8 and stepped back"


def test_one_worker_at_most_never_changes() -> None:
    assert set(drive(Ramp(maximum=1), lambda n: 1e6 * n, 1.0)) == {1}


def test_a_window_in_which_nothing_arrived_is_not_a_measurement() -> None:
    ramp = Ramp(maximum=8)
    ramp.observe(0.0, 0)
    ramp.observe(0.1, 0)  # the first window settles
    # a far link's first bytes are still on their way: a zero base would make the
    # step up look like a gain whatever it brings
    assert ramp.observe(0.2, 0) == 2
    assert ramp.observe(0.35, 10 * MiB) == 4  # measured now, then tried


def test_windows_stretch_to_cover_slow_pieces() -> None:
    ramp = Ramp(maximum=8)
    assert ramp.window == ramp.min_window
    for _ in range(20):
        ramp.piece_took(0.5)
    assert ramp.window == pytest.approx(1.0, rel=0.01)


@settings(max_examples=200, deadline=None)
@given(
    maximum=st.integers(1, 64),
    rates=st.lists(st.floats(0, 5e9, allow_nan=False), min_size=1, max_size=400),
)
def test_target_stays_between_one_and_the_maximum(maximum: int, rates: list[float]) -> None:
    ramp = Ramp(maximum=maximum)
    total, now = 0, 0.0
    for rate in rates:  # any throughput, including none at all
        now += 0.037
        total += int(rate * 0.037)
        assert 1 <= ramp.observe(now, total) <= maximum


def test_a_maximum_under_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Ramp(maximum=0)


# Real origins: the log says what the fetch loop chose, the bytes say it was right.


def worker_counts(data_dir: Path) -> list[int]:
    log = (data_dir / "logs" / "peer.log").read_text()
    return [2] + [
        int(m.group(1)) for m in re.finditer(r'fetch workers changed .*?workers="?(\d+)', log)
    ]


def start_relay(target_port: int, *faults: str) -> tuple[subprocess.Popen[str], int]:
    relay = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "support" / "relay.py"), "--target",
         f"127.0.0.1:{target_port}", "--lifetime", "120", *faults],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    return relay, json.loads(relay.stdout.readline())["port"]  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_origin_capping_each_connection_gets_every_worker(tmp_path, data_dir) -> None:
    from tests.support.nginx import Nginx

    nginx = Nginx.start(tmp_path / "nginx", limit_rate="12m")  # per connection
    try:
        digest = write_random(nginx.root / "capped.bin", 96 * MiB)
        out = tmp_path / "capped.out"
        result = run_damselfly(
            "get",
            nginx.url("/capped.bin"),
            "-O",
            str(out),
            "--no-progress",
            data_dir=data_dir,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == digest
        assert nginx.bytes_sent("/capped.bin") == 96 * MiB
    finally:
        nginx.stop()
    assert worker_counts(data_dir)[:3] == [2, 4, 8]


def test_a_slow_round_trip_gets_more_workers(tmp_path, data_dir) -> None:
    from tests.support.nginx import Nginx

    nginx = Nginx.start(tmp_path / "nginx")
    relay, port = start_relay(nginx.port, "--latency", "0.025")
    try:
        digest = write_random(nginx.root / "far.bin", 192 * MiB)
        out = tmp_path / "far.out"
        result = run_damselfly(
            "get",
            f"http://127.0.0.1:{port}/far.bin",
            "-O",
            str(out),
            "--no-progress",
            "--concurrency",
            "4",
            data_dir=data_dir,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == digest
    finally:
        stop(relay)
        nginx.stop()
    counts = worker_counts(data_dir)
    assert counts[:2] == [2, 4], counts
    assert max(counts) == 4, "--concurrency is the most it may use"


def request_counts(log: str) -> list[tuple[int, float]]:
    """(requests to parents, MB/s of the window that decided) for each change."""
    return [
        (int(m.group(1)), float(m.group(2)))
        for m in re.finditer(
            r'parent requests changed .*?requests="(\d+)".*?rate="([\d.]+)MB/s"', log
        )
    ]


def test_a_parent_capping_each_connection_gets_more_requests(cluster, tmp_path) -> None:
    from tests.support.nginx import Nginx

    nginx = Nginx.start(tmp_path / "nginx")
    upload = free_port()
    # children reach the parent only through the relay (the scheduler hands out its
    # port), which lets each connection carry 30 MB/s
    relay, relayed = start_relay(upload, "--conn-rate", "30MB")
    try:
        digest = write_random(nginx.root / "far-parent.bin", 128 * MiB, seed=7)
        url = nginx.url("/far-parent.bin")
        cluster.start_scheduler()
        parent = cluster.start_peer(
            "parent", "--port", str(upload), "--advertise-port", str(relayed)
        )
        child = cluster.start_peer("child")
        assert parent.get(url, tmp_path / "parent.out").returncode == 0
        result = child.get(url, tmp_path / "child.out")
        assert result.returncode == 0, result.stderr
        assert sha256_file(tmp_path / "child.out") == digest
        assert nginx.bytes_sent("/far-parent.bin") == 128 * MiB  # the child asked the parent
    finally:
        stop(relay)
        nginx.stop()
    changes = request_counts(child.log())
    print(changes)
    # each step up was kept: the window after it beat the one before by the ramp's 15%
    assert [n for n, _ in changes[:2]] == [4, 8], changes
    assert changes[1][1] >= 1.15 * changes[0][1] > 0, changes
