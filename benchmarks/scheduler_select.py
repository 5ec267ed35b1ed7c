"""Scheduler micro-benchmark, in process: 10k hosts, 100k tasks, announce + parent
selection latency (p50/p99) and the memory the view takes.

Run: ./dev bench scheduler_select [--hosts 10000] [--tasks 100000] [--holders 5]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from damselfly.protocol.scheduler import Announcement, HostInfo, HostType, PeerState
from damselfly.scheduler.selection import SelectionPolicy
from damselfly.scheduler.service import Scheduler


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--holders", type=int, default=5, help="peers holding each task")
    parser.add_argument("--announces", type=int, default=50_000)
    parser.add_argument("--json", default="artifacts/bench-scheduler.json")
    args = parser.parse_args()
    rng = random.Random(1)
    before = rss_mib()
    s = Scheduler(SelectionPolicy(), rng=random.Random(2))
    hosts = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}-host{n}" for n in range(args.hosts)]
    for n, host_id in enumerate(hosts):
        s.register_host(
            HostInfo(
                id=host_id,
                hostname=f"host{n}",
                ip="10.0.0.1",
                port=65002,
                type=HostType.SUPER if n < 10 else HostType.NORMAL,
                free_upload_slots=rng.randrange(33),
            )
        )
    tasks = [f"{n:064x}" for n in range(args.tasks)]
    started = time.perf_counter()
    for task_id in tasks:
        for host_id in rng.sample(hosts, args.holders):
            s.announce(
                Announcement(
                    task_id=task_id,
                    host_id=host_id,
                    peer_id=host_id + "-p",
                    url=f"https://example.com/{task_id}",
                    state=PeerState.SUCCEEDED,
                    content_length=512 << 20,
                    piece_length=4 << 20,
                    total_pieces=128,
                    finished=(1 << 128) - 1,
                )
            )
    populate = time.perf_counter() - started
    view_mib = rss_mib() - before

    latencies = []
    for _ in range(args.announces):
        task_id = rng.choice(tasks)
        host_id = rng.choice(hosts)
        a = Announcement(
            task_id=task_id,
            host_id=host_id,
            peer_id=host_id + "-p",
            url=f"https://example.com/{task_id}",
            state=PeerState.RUNNING,
            total_pieces=128,
            finished=rng.getrandbits(128),
            need_parents=True,
        )
        t0 = time.perf_counter()
        result = s.announce(a)
        latencies.append(time.perf_counter() - t0)
        assert result.parents or result.back_to_source or result.trigger_seed
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    peers = sum(len(t.peers) for t in s.tasks.values())
    report = {
        "hosts": len(s.hosts),
        "tasks": len(s.tasks),
        "peers": peers,
        "populate_seconds": round(populate, 2),
        "announce_select_p50_ms": round(p50, 4),
        "announce_select_p99_ms": round(p99, 4),
        "peak_rss_mib": round(rss_mib(), 1),
        "view_mib": round(view_mib, 1),
    }
    print(
        f"{report['hosts']} hosts, {report['tasks']} tasks, {peers} peers "
        f"(populated in {populate:.1f}s)\n"
        f"announce + parent selection: p50 {p50:.3f} ms, p99 {p99:.3f} ms (target p99 < 5 ms)\n"
        f"memory: view ~{view_mib:.0f} MiB, process peak RSS {rss_mib():.0f} MiB "
        "(target < 2 GB)"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
