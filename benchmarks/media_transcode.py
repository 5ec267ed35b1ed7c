"""Preset 100010 on a 30 s 720p clip: damselfly's PyAV transcode vs the ffmpeg binary.

Both get the same settings (H.264 veryfast 400 kbps, fps 25, 640x360 bicubic, GOP 50
with no scene-cut keyframes, AAC 64 kbps 44.1 kHz stereo, faststart) and run in turns,
`--rounds` times each, each in a fresh process; peak RSS of each is recorded. Then a
manager with its default media workers takes 20 queued tasks of mixed priorities:
throughput, and whether they started by priority then age.

Run: ./dev bench media_transcode [--rounds 5] [--seconds 30] [--queued 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.cluster import wait_for
from tests.support.manager import start_manager
from tests.support.media import MOVING, make_clip

PYAV = """
import sys, threading, time
started = time.perf_counter()
from pathlib import Path
from damselfly.media.templates import PRESETS
from damselfly.media.work.control import Control
from damselfly.media.work.staging import Staging
from damselfly.media.work.transcode import transcode
out = Path(sys.argv[2])
with Staging(out.parent, "bench") as staging:
    transcode(Path(sys.argv[1]), staging, out.name, PRESETS[100010].params,
              Control(threading.Event()))
    staging.commit()
print(f"in-process {time.perf_counter() - started:.3f}", flush=True)
"""


def ffmpeg_command(ffmpeg: str, source: Path, out: Path) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
        "-vf", "fps=25,scale=640:360:flags=bicubic,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "400k", "-maxrate", "600k",
        "-bufsize", "800k", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
        "-af", "aresample=44100,aformat=sample_rates=44100:channel_layouts=stereo",
        "-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "2",
        "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def child_rss(command: list[str]) -> tuple[float, float | None]:
    """Run to the end: (peak RSS in MiB from wait4, the time it reports for its work)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed with {proc.returncode}")
    reported = output.split("in-process ")[-1].strip() if "in-process" in output else None
    return usage.ru_maxrss / 1024, float(reported) if reported else None


def queued_throughput(root: Path, clip: Path, count: int) -> dict:
    inputs = root / "in"
    inputs.mkdir(parents=True)
    (inputs / "clip.mp4").write_bytes(clip.read_bytes())
    manager = start_manager(root / "manager", "--media-input-root", str(inputs),
                            "--media-output-root", str(root / "out"))  # fmt: skip
    try:
        token = manager.root_token
        rng = random.Random(7)
        body = {"input": {"path": "clip.mp4"}, "transcodes": [{"template_id": 100010}],
                "snapshots": [{"offsets": ["10%", "50%"]}]}  # fmt: skip
        # one task first, so the rest wait in the queue together
        manager.call("POST", "/api/v1/media/tasks", body, token)[1]
        tasks = []
        started = time.perf_counter()
        for _ in range(count - 1):
            priority = rng.randint(-10, 10)
            task = manager.call("POST", "/api/v1/media/tasks", {**body, "priority": priority},
                                token)[1]  # fmt: skip
            tasks.append((priority, task["task_id"]))

        def all_done() -> bool:
            listed = manager.call("GET", "/api/v1/media/tasks?status=FINISH&per_page=100",
                                  token=token)[1]  # fmt: skip
            return listed["total"] == count

        assert wait_for(all_done, timeout=3600, interval=0.5)
        seconds = time.perf_counter() - started
        views = {tid: manager.call("GET", f"/api/v1/media/tasks/{tid}", token=token)[1]
                 for _, tid in tasks}  # fmt: skip
        failed = sum(v["failed"] for v in views.values())
        order = [p for p, tid in sorted(tasks, key=lambda t: views[t[1]]["begin_at"])]
        expected = [p for p, _ in sorted(tasks, key=lambda t: -t[0])]  # stable: age among equals
        return {"tasks": count, "seconds": seconds, "tasks_per_minute": 60 * count / seconds,
                "failed": failed, "started_by_priority": order == expected,
                "start_order": order}  # fmt: skip
    finally:
        manager.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--queued", type=int, default=20)
    parser.add_argument("--json", default="artifacts/bench-media-transcode.json")
    args = parser.parse_args()
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SystemExit("needs imageio-ffmpeg (./dev bench installs it)") from None
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    root = Path(tempfile.mkdtemp(prefix="damselfly-media-"))
    clip = make_clip(root / "clip720.mp4", seconds=args.seconds, size=(1280, 720), graph=MOVING)
    pyav_cmd = [sys.executable, "-c", PYAV, str(clip), str(root / "pyav.mp4")]
    ffmpeg_cmd = ffmpeg_command(ffmpeg, clip, root / "ffmpeg.mp4")
    subprocess.run(pyav_cmd, check=True)  # warm the page cache and the imports
    subprocess.run(ffmpeg_cmd, check=True)
    pyav, ff, pyav_rss, ff_rss, pyav_inner = [], [], [], [], []
    for n in range(args.rounds):
        order = [("pyav", pyav_cmd), ("ffmpeg", ffmpeg_cmd)]
        for name, command in order if n % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            rss, inner = child_rss(command)
            seconds = time.perf_counter() - started
            (pyav if name == "pyav" else ff).append(seconds)
            (pyav_rss if name == "pyav" else ff_rss).append(rss)
            if inner is not None:
                pyav_inner.append(inner)
            shown = f" ({inner:.2f}s without the interpreter's start)" if inner else ""
            print(
                f"round {n + 1} {name}: {seconds:.2f}s{shown}, peak RSS {rss:.0f} MiB", flush=True
            )
    ratio = statistics.median(ff) / statistics.median(pyav)
    warm = statistics.median(ff) / statistics.median(pyav_inner)
    print(f"median: PyAV {statistics.median(pyav):.2f}s, ffmpeg {statistics.median(ff):.2f}s "
          f"-> PyAV at {ratio:.2f}x ffmpeg's speed (target >= 0.95x); {warm:.2f}x in a "
          "running worker (no interpreter start)")  # fmt: skip
    queue = queued_throughput(root / "queue", make_clip(root / "short.mp4", seconds=8),
                              args.queued)  # fmt: skip
    print(f"{queue['tasks']} queued tasks in {queue['seconds']:.1f}s "
          f"({queue['tasks_per_minute']:.1f}/min), failed {queue['failed']}, "
          f"started by priority: {queue['started_by_priority']}")  # fmt: skip
    figures = {
        "clip_seconds": args.seconds, "pyav_seconds": pyav, "ffmpeg_seconds": ff,
        "speed_ratio_vs_ffmpeg": ratio, "speed_ratio_in_worker": warm,
        "pyav_in_process_seconds": pyav_inner, "pyav_peak_rss_mib": max(pyav_rss),
        "ffmpeg_peak_rss_mib": max(ff_rss), "queue": queue,
    }  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "queue"}, indent=2))


if __name__ == "__main__":
    main()
