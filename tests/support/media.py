"""Short test clips made with PyAV from FFmpeg's lavfi sources (no media ships).

The standard clip: 4 s at 320x240, 25 fps — colour bars for 1 s, black for 1 s, a
moving test pattern for 2 s (scene cuts at 1 s and 2 s) — over a 440 Hz tone that is
silent from 2.5 s to 3.0 s.
"""

from __future__ import annotations

from pathlib import Path

import av

STANDARD = (
    "smptebars=s={w}x{h}:r={fps}:d=1[a];color=c=black:s={w}x{h}:r={fps}:d=1[b];"
    "testsrc=s={w}x{h}:r={fps}:d={rest}[c];[a][b][c]concat=n=3,format=yuv420p[out0];"
    "sine=f=440:sample_rate=44100:d={seconds},"
    "volume=volume=0:enable='between(t,2.5,3)',aformat=channel_layouts=stereo[out1]"
)
MOVING = (
    "testsrc2=s={w}x{h}:r={fps}:d={seconds},format=yuv420p[out0];"
    "sine=f=330:sample_rate=48000:d={seconds},aformat=channel_layouts=stereo[out1]"
)
TONE_ONLY = "sine=f=440:sample_rate=44100:d={seconds},aformat=channel_layouts=stereo[out0]"


def make_clip(
    path: Path,
    *,
    seconds: float = 4,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    graph: str = STANDARD,
    video: bool = True,
) -> Path:
    """Encode the lavfi graph's streams as H.264 + AAC in MP4 (or AAC in M4A)."""
    w, h = size
    source = av.open(
        graph.format(w=w, h=h, fps=fps, seconds=seconds, rest=max(0.04, seconds - 2)),
        format="lavfi",
    )
    out = av.open(str(path), "w")
    try:
        mapping = {}
        for stream in source.streams:
            if stream.type == "video" and video:
                v = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
                v.width, v.height, v.pix_fmt = w, h, "yuv420p"
                mapping[stream.index] = v
            elif stream.type == "audio":
                a = out.add_stream("aac", rate=stream.codec_context.sample_rate)
                a.layout = "stereo"
                mapping[stream.index] = a
        for packet in source.demux():
            target = mapping.get(packet.stream.index)
            if target is not None:
                for frame in packet.decode():
                    out.mux(target.encode(frame))
        for target in mapping.values():
            out.mux(target.encode(None))
    finally:
        out.close()
        source.close()
    return path


def probe(path: Path) -> dict:
    """What a test checks an output against."""
    with av.open(str(path)) as c:
        info = {
            "duration": c.duration / av.time_base if c.duration else 0.0,
            "format": c.format.name,
            "streams": [],
        }
        for s in c.streams:
            entry = {"type": s.type, "codec": s.codec_context.codec.canonical_name}
            if s.type == "video":
                entry.update(
                    width=s.codec_context.width,
                    height=s.codec_context.height,
                    fps=float(s.average_rate or 0),
                )
            elif s.type == "audio":
                entry.update(
                    sample_rate=s.codec_context.sample_rate, channels=s.codec_context.channels
                )
            info["streams"].append(entry)
        return info


def stream(info: dict, kind: str) -> dict:
    return next(s for s in info["streams"] if s["type"] == kind)
