"""Images from video: snapshots at offsets, sampled snapshots, sprite sheets with a
WebVTT index, animated GIF/WebP."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from damselfly.media.states import ErrorCode
from damselfly.media.work.control import Control, MediaFailure
from damselfly.media.work.probe import open_input
from damselfly.media.work.staging import Staging
from damselfly.media.work.transcode import target_size

_IMAGE_CODECS = {
    "jpg": ("mjpeg", "yuvj420p"),
    "png": ("png", "rgb24"),
    "webp": ("libwebp", "yuv420p"),
}


def _video(inp: Any) -> Any:
    stream = next(iter(inp.streams.video), None)
    if stream is None:
        raise MediaFailure(ErrorCode.NO_VIDEO, "the input has no video stream to take images from")
    stream.thread_type = "AUTO"
    return stream


def duration_of(inp: Any, stream: Any) -> float:
    if inp.duration:
        return inp.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return 0.0


def frames_at(inp: Any, stream: Any, times: list[float], control: Control) -> Iterator[Any]:
    """The frame shown at each time (frame-accurate: seek to the keyframe before, then
    decode forward); the last frame for times past the end."""
    for n, wanted in enumerate(times):
        control.check()
        inp.seek(int(max(0.0, wanted) / stream.time_base), stream=stream, backward=True)
        shown = None
        try:
            for frame in inp.decode(stream):
                control.check()
                if frame.time is None:
                    continue
                if frame.time > wanted + 1e-3 and shown is not None:
                    break
                shown = frame
                if abs(frame.time - wanted) < 1e-3:
                    break
        except av.error.InvalidDataError as exc:
            if shown is None:
                raise MediaFailure(
                    ErrorCode.CONTENT_MALFORMED, f"the input is damaged: {exc}"
                ) from None
        if shown is None:
            raise MediaFailure(
                ErrorCode.CONTENT_MALFORMED, f"no frame could be decoded at {wanted:g}s"
            )
        control.progress(100 * (n + 1) / max(1, len(times)))
        yield shown


def encode_image(frame: Any, path: Path, fmt: str, width: int = 0, height: int = 0) -> dict:
    codec, pix_fmt = _IMAGE_CODECS[fmt]
    w, h = target_size(frame.width, frame.height, width, height)
    image = frame.reformat(width=w, height=h, format=pix_fmt)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix_fmt
    ctx.time_base = Fraction(1, 25)
    if fmt == "jpg":
        ctx.options = {"qmin": "2", "qmax": "4"}
    packets = [*ctx.encode(image), *ctx.encode(None)]
    path.write_bytes(b"".join(bytes(p) for p in packets))
    return {"width": w, "height": h}


def snapshots(
    source: Path, staging: Staging, stem: str, params: dict, times: list[float], control: Control
) -> dict[str, dict]:
    """One image per time; {file name: what it shows} for the outputs list."""
    described = {}
    with open_input(source, "the input") as inp:
        stream = _video(inp)
        for n, frame in enumerate(frames_at(inp, stream, times, control)):
            name = f"{stem}_{n}.{params['format']}"
            size = encode_image(
                frame, staging.path(name), params["format"], params["width"], params["height"]
            )
            described[name] = {**size, "time": round(float(frame.time), 3)}
    return described


def media_duration(source: Path) -> float:
    with open_input(source, "the input") as inp:
        stream = next(iter(inp.streams.video), None) or next(iter(inp.streams), None)
        return duration_of(inp, stream) if stream is not None else 0.0


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def image_sprite(
    source: Path, staging: Staging, stem: str, params: dict, control: Control
) -> dict[str, dict]:
    """Sheets of tiles every `interval` seconds, and a WebVTT that maps time to tile."""
    with open_input(source, "the input") as inp:
        stream = _video(inp)
        duration = duration_of(inp, stream)
        interval = float(params["interval"])
        count = max(1, int(duration // interval) + (1 if duration % interval > 1e-6 else 0))
        times = [min(i * interval, max(0.0, duration - 0.001)) for i in range(count)]
        per_sheet = params["columns"] * params["rows"]
        tw, th = params["tile_width"], params["tile_height"]
        described: dict[str, dict] = {}
        cues = ["WEBVTT", ""]
        sheet_frames: list[Any] = []
        sheets = 0

        def flush() -> None:
            nonlocal sheets
            if not sheet_frames:
                return
            name = f"{stem}_{sheets}.{params['format']}"
            cols = min(params["columns"], len(sheet_frames))
            rows = (len(sheet_frames) + params["columns"] - 1) // params["columns"]
            graph = av.filter.Graph()
            src = graph.add_buffer(width=tw, height=th, format="yuv420p", time_base=Fraction(1, 25))
            tile = graph.add("tile", f"{cols}x{rows}")
            sink = graph.add("buffersink")
            src.link_to(tile)
            tile.link_to(sink)
            graph.configure()
            for i, frame in enumerate(sheet_frames):
                small = frame.reformat(width=tw, height=th, format="yuv420p")
                small.pts, small.time_base = i, Fraction(1, 25)
                graph.push(small)
            graph.push(None)
            sheet = graph.pull()
            described[name] = encode_image(sheet, staging.path(name), params["format"])
            described[name]["tiles"] = len(sheet_frames)
            sheets += 1
            sheet_frames.clear()

        for n, frame in enumerate(frames_at(inp, stream, times, control)):
            index = n % per_sheet
            x, y = index % params["columns"] * tw, index // params["columns"] * th
            begin, end = times[n], min(duration, times[n] + interval)
            cues += [
                f"{_vtt_time(begin)} --> {_vtt_time(end)}",
                f"{stem}_{sheets}.{params['format']}#xywh={x},{y},{tw},{th}",
                "",
            ]
            sheet_frames.append(frame)
            if len(sheet_frames) == per_sheet:
                flush()
        flush()
    vtt = f"{stem}.vtt"
    staging.path(vtt).write_text("\n".join(cues))
    described[vtt] = {"tiles": count}
    return described


def animated_image(
    source: Path,
    staging: Staging,
    name: str,
    params: dict,
    start: float,
    end: float,
    control: Control,
) -> dict[str, Any]:
    """A GIF (with a palette made for the clip) or an animated WebP of [start, end)."""
    with open_input(source, "the input") as inp:
        stream = _video(inp)
        duration = duration_of(inp, stream)
        end = min(end, duration) if duration else end
        if end <= start:
            raise MediaFailure(
                ErrorCode.CONTENT_MALFORMED,
                f"the animated image starts at {start:g}s, past the end of the input ({end:g}s)",
            )
        w, h = target_size(
            stream.codec_context.width,
            stream.codec_context.height,
            params["width"],
            params["height"],
        )
        fps = Fraction(params["fps"]).limit_denominator(1001)
        graph = av.filter.Graph()
        src = graph.add_buffer(template=stream)
        chain = [graph.add("fps", f"fps={fps}"), graph.add("scale", f"{w}:{h}:flags=lanczos")]
        gif = params["format"] == "gif"
        if gif:  # one palette for the whole clip: far fewer bands than a fixed one
            split = graph.add("split")
            palette = graph.add("palettegen", "stats_mode=diff")
            use = graph.add("paletteuse", "dither=bayer:bayer_scale=4")
        sink = graph.add("buffersink")
        node = src
        for step in chain:
            node.link_to(step)
            node = step
        if gif:
            node.link_to(split)
            split.link_to(use, 0, 0)
            split.link_to(palette, 1, 0)
            palette.link_to(use, 0, 1)
            use.link_to(sink)
        else:
            node.link_to(sink)
        graph.configure()
        inp.seek(int(start / stream.time_base), stream=stream, backward=True)
        frames: list[Any] = []
        first = None
        for frame in inp.decode(stream):
            control.check()
            if frame.time is None or frame.time < start:
                continue
            if frame.time >= end:
                break
            first = frame.pts if first is None else first
            frame.pts -= first
            graph.push(frame)
            frames += _pull_all(graph)
            control.progress(90 * (frame.time - start) / (end - start))
        graph.push(None)
        frames += _pull_all(graph)
    path = staging.path(name)
    out = av.open(str(path), "w", format="gif" if gif else "webp")
    try:
        vout = out.add_stream("gif" if gif else "libwebp_anim", rate=fps)
        vout.width, vout.height = w, h
        vout.pix_fmt = "pal8" if gif else "yuv420p"
        if not gif:
            vout.options = {"loop": "0", "quality": "75"}
        for n, frame in enumerate(frames):
            frame = frame if gif else frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = n, 1 / fps
            out.mux(vout.encode(frame))
        out.mux(vout.encode(None))
    finally:
        out.close()
    control.progress(100)
    return {
        "width": w,
        "height": h,
        "frames": len(frames),
        "duration": round(len(frames) / float(fps), 3),
    }


def _pull_all(graph: Any) -> list[Any]:
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return frames
