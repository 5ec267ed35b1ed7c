"""`damselfly get` from the source (cold store) against `curl -o`, same nginx origin.

Also the cache-hit `get` of the same file and the peak RSS of every `get`.
Run: ./dev bench get_vs_curl [--size 1GiB] [--rounds 6]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.nginx import Nginx
from tests.support.processes import sha256_file

from benchmarks.machine import drop_page_cache, prewarm_memory
from damselfly.units import format_size, parse_size


def settle(warm: Path, tools: list[list[str]]) -> None:
    """Same start for every timed command on this noisy VM: earlier outputs written
    back and out of the page cache, the origin file and both programs' files in it
    (the download is timed, not reading a program from disk), memory touched."""
    if not drop_page_cache(keep=warm):
        with warm.open("rb") as f:
            while f.read(8 << 20):
                pass
    for tool in tools:
        subprocess.run(tool, stdout=subprocess.DEVNULL, check=True)
    prewarm_memory(2 * warm.stat().st_size)


def warm_ups(curl: str) -> list[list[str]]:
    """Commands that read each program's files without downloading anything."""
    modules = "damselfly.cli.main, damselfly.cli.get, damselfly.peer.download"
    modules += ", damselfly.peer.fetch, damselfly.source.http, damselfly.storage.gc"
    return [[curl, "--version"], [sys.executable, "-c", f"import {modules}"]]


GNU_TIME = shutil.which("time") and Path("/usr/bin/time")


def timed(cmd: list[str], warm: Path, tools: list[list[str]]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command.

    A child's ru_maxrss starts at its parent's RSS when spawned (the kernel keeps the
    pre-exec high-water mark), and this benchmark holds big buffers; GNU time, a
    small process, measures the command's own peak when it is installed.
    """
    settle(warm, tools)
    rss_file = warm.parent / "rss.txt"
    wrapped = cmd
    if GNU_TIME and GNU_TIME.exists():
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd]
    started = time.perf_counter()
    process = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{process.stderr.read().decode()}")
    if wrapped is not cmd:
        return elapsed, int(rss_file.read_text().split()[-1]) * 1024
    return elapsed, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", default="artifacts/bench-get-vs-curl.json")
    parser.add_argument(
        "--workdir",
        default="/var/tmp",
        help="where the origin file, outputs and stores live (/dev/shm: no disk)",
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is not installed")
    damselfly = [sys.executable, "-m", "damselfly", "get"]
    tools = warm_ups(curl)

    with tempfile.TemporaryDirectory(prefix="damselfly-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        nginx = Nginx.start(work / "nginx")
        try:
            source = nginx.root / "big.bin"
            h = hashlib.sha256()
            with source.open("wb") as f:
                for _ in range(0, size, 8 << 20):
                    block = os.urandom(min(8 << 20, size - f.tell()))
                    f.write(block)
                    h.update(block)
            expected = h.hexdigest()
            url = nginx.url("/big.bin")
            # Nothing is deleted between timed runs: on this VM's disk (online discard) a
            # 1 GiB delete slowed whichever command ran next by seconds.
            curl_times, get_times, get_rss = [], [], []

            def timed_get(out: Path, data: Path) -> float:
                cmd = [*damselfly, url, "-O", str(out), "--no-progress", "--data-dir", str(data)]
                wall, rss = timed(cmd, source, tools)
                get_rss.append(rss)
                return wall

            for n in range(args.rounds):
                out = work / f"get-{n}.bin"
                data = work / f"data-{n}"
                # whichever runs first in a round runs on a quieter page cache: take turns
                if n % 2:
                    get_times.append(timed_get(out, data))
                curl_out = str(work / f"curl-{n}.bin")
                wall, _ = timed([curl, "-s", "-f", "-o", curl_out, url], source, tools)
                curl_times.append(wall)
                if not n % 2:
                    get_times.append(timed_get(out, data))
                if n == 0 and sha256_file(out) != expected:
                    raise SystemExit("damselfly get produced wrong bytes")
                print(
                    f"round {n + 1}: curl {curl_times[-1]:.2f}s  get {get_times[-1]:.2f}s",
                    flush=True,
                )

            # cache hits from the last round's store
            hit_times = [timed_get(work / f"hit-{n}.bin", data) for n in range(args.rounds)]
            log = (data / "logs" / "peer.log").read_text()
            hit_costs = [
                float(c)
                for c in re.findall(
                    r'download task succeeded .*from_cache="true".* cost="([\d.]+)s"', log
                )
            ]
            origin_bytes = nginx.bytes_sent("/big.bin")
        finally:
            nginx.stop()

    curl_med, get_med = statistics.median(curl_times), statistics.median(get_times)
    result = {
        "size_bytes": size,
        "workdir": args.workdir,
        "rounds": args.rounds,
        "curl_seconds": curl_times,
        "get_seconds": get_times,
        "curl_throughput_MBps": size / curl_med / 1e6,
        "get_throughput_MBps": size / get_med / 1e6,
        "ratio_get_over_curl": curl_med / get_med,
        "cache_hit_wall_seconds": hit_times,
        "cache_hit_engine_seconds": hit_costs,
        "peak_rss_bytes": max(get_rss),
        "origin_bytes_sent": origin_bytes,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(
        f"file: {format_size(size)} from nginx on 127.0.0.1 into {args.workdir}, "
        f"{args.rounds} rounds, each tool first in half of them, medians"
    )
    print(f"curl -o          {curl_med:6.2f}s  {result['curl_throughput_MBps']:7.0f} MB/s")
    print(
        f"damselfly get    {get_med:6.2f}s  {result['get_throughput_MBps']:7.0f} MB/s"
        f"  = {result['ratio_get_over_curl']:.2f}x curl (target >= 1.0x)"
    )
    print(
        f"cache-hit get    {statistics.median(hit_times):6.3f}s wall (whole command), "
        f"{statistics.median(hit_costs) if hit_costs else float('nan'):.4f}s in the engine"
        " (target <= 0.5s)"
    )
    print(f"peak RSS of get  {max(get_rss) / 2**20:6.1f} MiB (target <= 150 MB)")


if __name__ == "__main__":
    main()
