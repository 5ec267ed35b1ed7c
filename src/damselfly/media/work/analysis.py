"""Content understanding and review without models (none can be downloaded here).

One decoding pass feeds FFmpeg's detectors, which tag frames with their findings:
scene cuts (scdet), black (blackdetect), freezes (freezedetect), brightness
(signalstats), silence (silencedetect) and loudness (ebur128). Understanding reports
them as time segments; review maps them through fixed rules to pass / review / block.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from damselfly.media.work.control import Control
from damselfly.media.work.images import duration_of
from damselfly.media.work.probe import open_input


@dataclass
class Findings:
    duration: float = 0.0
    cuts: list[float] = field(default_factory=list)
    black: list[dict[str, float]] = field(default_factory=list)
    freeze: list[dict[str, float]] = field(default_factory=list)
    silence: list[dict[str, float]] = field(default_factory=list)
    brightness: list[tuple[float, float]] = field(default_factory=list)  # (time, mean Y 0-255)
    colours: Counter = field(default_factory=Counter)
    loudness: float | None = None  # integrated LUFS


def _graph(stream: Any, chain: list[tuple[str, str]], audio: bool) -> av.filter.Graph:
    graph = av.filter.Graph()
    node = graph.add_abuffer(template=stream) if audio else graph.add_buffer(template=stream)
    for name, args in chain:
        step = graph.add(name, args)
        node.link_to(step)
        node = step
    sink = graph.add("abuffersink" if audio else "buffersink")
    node.link_to(sink)
    graph.configure()
    return graph


def _pull(graph: av.filter.Graph) -> list[Any]:
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return frames


def _open_segment(segments: list[dict[str, float]], start: str) -> None:
    segments.append({"start": round(float(start), 3), "end": -1.0})


def _close_segment(segments: list[dict[str, float]], end: str) -> None:
    if segments and segments[-1]["end"] < 0:
        segments[-1]["end"] = round(float(end), 3)


def _colour(frame: Any, findings: Findings) -> None:
    tiny = frame.reformat(width=8, height=8, format="rgb24")
    data = bytes(tiny.planes[0])
    stride = tiny.planes[0].line_size
    for y in range(8):
        row = data[y * stride : y * stride + 24]
        for x in range(8):
            r, g, b = row[3 * x : 3 * x + 3]
            findings.colours[(r >> 5, g >> 5, b >> 5)] += 1  # 8 levels per channel


def scan(source: Path, args: dict[str, Any], control: Control) -> Findings:
    threshold = float(args.get("scene_threshold", 10))
    findings = Findings()
    with open_input(source, "the input") as inp:
        video = next(iter(inp.streams.video), None)
        audio = next(iter(inp.streams.audio), None)
        findings.duration = duration_of(inp, video or audio) if (video or audio) else 0.0
        vgraph = agraph = None
        if video is not None:
            video.thread_type = "AUTO"
            vgraph = _graph(
                video,
                [
                    ("scdet", f"threshold={threshold}"),
                    ("blackdetect", "d=0.5:pix_th=0.10"),
                    ("freezedetect", "n=0.003:d=1"),
                    ("signalstats", ""),
                ],
                audio=False,
            )
        if audio is not None:
            agraph = _graph(
                audio,
                [("silencedetect", "noise=-50dB:d=0.5"), ("ebur128", "metadata=1")],
                audio=True,
            )
        streams = [s for s in (video, audio) if s is not None]
        next_colour = 0.0
        for packet in inp.demux(streams):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in frames:
                control.check()
                graph = vgraph if packet.stream is video else agraph
                graph.push(frame)
                for out in _pull(graph):
                    _collect(out, findings, threshold, video=packet.stream is video)
                    if packet.stream is video and out.time is not None and out.time >= next_colour:
                        _colour(out, findings)
                        next_colour = out.time + 1.0
                if frame.time is not None and findings.duration:
                    control.progress(95 * frame.time / findings.duration)
        for graph, is_video in ((vgraph, True), (agraph, False)):
            if graph is not None:
                graph.push(None)
                for out in _pull(graph):
                    _collect(out, findings, threshold, video=is_video)
    for segments in (findings.black, findings.freeze, findings.silence):
        _close_segment(segments, str(findings.duration))
    control.progress(100)
    return findings


def _collect(frame: Any, findings: Findings, threshold: float, *, video: bool) -> None:
    meta = frame.metadata
    if video:
        if float(meta.get("lavfi.scd.score", 0)) >= threshold and "lavfi.scd.time" in meta:
            findings.cuts.append(round(float(meta["lavfi.scd.time"]), 3))
        if "lavfi.black_start" in meta:
            _open_segment(findings.black, meta["lavfi.black_start"])
        if "lavfi.black_end" in meta:
            _close_segment(findings.black, meta["lavfi.black_end"])
        if "lavfi.freezedetect.freeze_start" in meta:
            _open_segment(findings.freeze, meta["lavfi.freezedetect.freeze_start"])
        if "lavfi.freezedetect.freeze_end" in meta:
            _close_segment(findings.freeze, meta["lavfi.freezedetect.freeze_end"])
        if "lavfi.signalstats.YAVG" in meta and frame.time is not None:
            findings.brightness.append((float(frame.time), float(meta["lavfi.signalstats.YAVG"])))
    else:
        if "lavfi.silence_start" in meta:
            _open_segment(findings.silence, meta["lavfi.silence_start"])
        if "lavfi.silence_end" in meta:
            _close_segment(findings.silence, meta["lavfi.silence_end"])
        if "lavfi.r128.I" in meta:
            findings.loudness = round(float(meta["lavfi.r128.I"]), 1)


def _scenes(findings: Findings) -> list[dict[str, float]]:
    bounds = [0.0, *sorted(set(findings.cuts)), findings.duration]
    return [{"start": a, "end": b} for a, b in itertools.pairwise(bounds) if b > a]


def understand(source: Path, args: dict[str, Any], control: Control) -> dict[str, Any]:
    found = scan(source, args, control)
    scenes = _scenes(found)
    lit = [
        s
        for s in scenes
        if not any(b["start"] <= s["start"] and s["end"] <= b["end"] for b in found.black)
    ]
    longest = max(lit or scenes, key=lambda s: s["end"] - s["start"], default=None)
    total = sum(found.colours.values()) or 1
    colours = [
        {
            "rgb": "#{:02x}{:02x}{:02x}".format(*(c * 32 + 16 for c in key)),
            "share": round(n / total, 3),
        }
        for key, n in found.colours.most_common(5)
    ]
    levels = [y for _, y in found.brightness]
    return {
        "duration": round(found.duration, 3),
        "scene_cuts": found.cuts,
        "scenes": scenes,
        "cover_time": round((longest["start"] + longest["end"]) / 2, 3) if longest else 0.0,
        "dominant_colours": colours,
        "brightness": round(sum(levels) / len(levels) / 255, 3) if levels else None,
        "black": found.black,
        "freeze": found.freeze,
        "silence": found.silence,
        "loudness_lufs": found.loudness,
    }


# review rules (documented in the API): what is flagged, and how hard
RULES = {
    "black": ("review", 2.0, "black picture for {d:.1f}s"),
    "freeze": ("review", 5.0, "frozen picture for {d:.1f}s"),
    "silence": ("review", 5.0, "silence for {d:.1f}s"),
}


def review(source: Path, args: dict[str, Any], control: Control) -> dict[str, Any]:
    """Rule-based review: segments that break a rule, and the overall suggestion."""
    found = scan(source, args, control)
    flags = []
    for kind, (level, minimum, text) in RULES.items():
        limit = float(args.get(f"{kind}_max_seconds", minimum))
        for segment in getattr(found, kind):
            length = segment["end"] - segment["start"]
            if length >= limit:
                flags.append(
                    {"label": kind, "suggestion": level, **segment, "reason": text.format(d=length)}
                )
    # flashing: the mean brightness swings by over 40% of the range more than 3 times a second
    swings = [
        t
        for (t, y), (_, prev) in zip(found.brightness[1:], found.brightness, strict=False)
        if abs(y - prev) > 0.4 * 255
    ]
    for t in swings:
        if sum(1 for s in swings if t <= s < t + 1.0) > 3:
            flags.append(
                {
                    "label": "flashing",
                    "suggestion": "block",
                    "start": round(t, 3),
                    "end": round(t + 1.0, 3),
                    "reason": "more than 3 full-screen flashes in a second",
                }
            )
            break
    if found.loudness is not None and not -40 <= found.loudness <= -5:
        flags.append(
            {
                "label": "loudness",
                "suggestion": "review",
                "start": 0.0,
                "end": round(found.duration, 3),
                "reason": f"integrated loudness {found.loudness} LUFS",
            }
        )
    order = {"pass": 0, "review": 1, "block": 2}
    suggestion = max((f["suggestion"] for f in flags), key=order.__getitem__, default="pass")
    return {"suggestion": suggestion, "segments": flags, "rules": "rule-based, no model"}
