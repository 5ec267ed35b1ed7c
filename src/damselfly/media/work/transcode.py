"""Transcoding to MP4 (faststart), WebM or HLS, with optional enhancement filters.

Decoding and encoding are threaded (FFmpeg's frame + slice threads release the GIL):
single-threaded PyAV measured ~0.83x an ffmpeg binary here. Video goes through one
filter graph (fps, scale, enhancement, pixel format); audio through another
(denoise, loudness, then resampling: loudnorm works at 192 kHz).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from damselfly.media.states import ErrorCode
from damselfly.media.templates import AUDIO_CODECS, VIDEO_CODECS
from damselfly.media.work.control import Control, MediaFailure
from damselfly.media.work.encoder import EncoderThread
from damselfly.media.work.probe import open_input, probe
from damselfly.media.work.staging import Staging

X264_PRESET = "veryfast"  # the speed/quality point every H.264/H.265 preset template uses


def even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def target_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """The output size: a 0 side follows the source's aspect ratio."""
    if width and height:
        return width, height
    if height:
        return even(src_w * height / src_h), height
    if width:
        return width, even(src_h * width / src_w)
    return even(src_w), even(src_h)


def _drain(graph: av.filter.Graph) -> list[Any]:
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return frames


def _video_filters(params: dict[str, Any], size: tuple[int, int], fps: Fraction) -> list[tuple]:
    chain: list[tuple[str, str]] = [("fps", f"fps={fps}")]
    enhancement = params.get("enhancement") or {}
    if enhancement.get("denoise"):
        strength = 0.02 + 0.2 * float(enhancement["denoise"])
        chain.append(("atadenoise", f"0a={strength:.3f}:0b={strength * 2:.3f}"))
    chain.append(("scale", f"{size[0]}:{size[1]}:flags=bicubic"))
    if enhancement.get("sharpen"):
        chain.append(("cas", f"strength={float(enhancement['sharpen']):.2f}"))
    brightness = float(enhancement.get("brightness", 0) or 0)
    contrast = float(enhancement.get("contrast", 1) or 1)
    if brightness or contrast != 1:
        chain.append(
            ("lutyuv", f"y=clip((val-128)*{contrast:.3f}+128+{brightness * 100:.1f}\\,16\\,235)")
        )
    chain.append(("format", "yuv420p"))
    return chain


def _audio_filters(params: dict[str, Any]) -> list[tuple[str, str]]:
    enhancement = params.get("enhancement") or {}
    chain: list[tuple[str, str]] = []
    if enhancement.get("audio_denoise"):
        chain.append(("afftdn", "nr=12"))
    if enhancement.get("loudness") is not None:
        chain.append(("loudnorm", f"I={float(enhancement['loudness']):.1f}:TP=-1.5:LRA=11"))
    layout = "mono" if params["channels"] == 1 else "stereo"
    # after loudnorm (192 kHz out) the rate must come back to the template's
    chain.append(("aresample", str(params["sample_rate"])))
    chain.append(("aformat", f"sample_rates={params['sample_rate']}:channel_layouts={layout}"))
    return chain


def _graph(stream: Any, chain: list[tuple[str, str]], audio: bool) -> av.filter.Graph:
    graph = av.filter.Graph()
    node = graph.add_abuffer(template=stream) if audio else graph.add_buffer(template=stream)
    for name, args in chain:
        nxt = graph.add(name, args)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("abuffersink" if audio else "buffersink")
    node.link_to(sink)
    graph.configure()
    return graph


def _open_output(path: Path, params: dict[str, Any], segment_seconds: float) -> Any:
    if params["container"] == "hls":
        pattern = str(path.with_name(path.stem + "_%05d.ts"))
        return av.open(
            str(path),
            "w",
            format="hls",
            options={
                "hls_time": f"{segment_seconds:g}",
                "hls_playlist_type": "vod",
                "hls_list_size": "0",
                "hls_segment_filename": pattern,
            },
        )
    if params["container"] == "webm":
        return av.open(str(path), "w", format="webm")
    return av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})


def output_name(label: str, params: dict[str, Any]) -> str:
    ext = {"mp4": "mp4", "hls": "m3u8", "webm": "webm"}[params["container"]]
    return f"{label}.{ext}"


def transcode(
    source: Path,
    staging: Staging,
    name: str,
    params: dict[str, Any],
    control: Control,
    *,
    start: float = 0.0,
    end: float | None = None,
) -> dict[str, Any]:
    """Write `name` into `staging`; what the output is (probed)."""
    out_path = staging.path(name)
    with open_input(source, "the input") as inp:
        vin = None if params.get("remove_video") else next(iter(inp.streams.video), None)
        ain = None if params.get("remove_audio") else next(iter(inp.streams.audio), None)
        if vin is None and not params.get("remove_video"):
            raise MediaFailure(
                ErrorCode.NO_VIDEO,
                "the input has no video stream; use a template with remove_video for audio",
            )
        if vin is None and ain is None:
            raise MediaFailure(ErrorCode.CONTENT_MALFORMED, "the input has no audio stream")
        duration = inp.duration / av.time_base if inp.duration else 0.0
        stop_at = min(end, duration) if end and duration else (end or duration)
        span = max(0.001, (stop_at or duration or 1) - start)
        if vin is not None:
            vin.thread_type = "AUTO"
        fps = Fraction(params["fps"]).limit_denominator(1001) if params["fps"] else None
        if vin is not None and fps is None:
            fps = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001)
        gop = params["gop"] or (round(2 * fps) if fps else 50)
        out = _open_output(out_path, params, gop / float(fps) if fps else 2.0)
        try:
            vout = aout = vgraph = agraph = None
            if vin is not None:
                assert fps is not None
                size = target_size(
                    vin.codec_context.width,
                    vin.codec_context.height,
                    params["width"],
                    params["height"],
                )
                vgraph = _graph(vin, _video_filters(params, size, fps), audio=False)
                vout = out.add_stream(VIDEO_CODECS[params["video_codec"]], rate=fps)
                vout.width, vout.height, vout.pix_fmt = size[0], size[1], "yuv420p"
                vout.codec_context.time_base = 1 / fps
                vout.thread_type = "AUTO"
                options = {"g": str(gop), "keyint_min": str(gop)}
                if params["video_codec"] in ("h264", "h265"):
                    options.update(preset=X264_PRESET, sc_threshold="0")
                if params["video_bitrate"]:
                    vout.bit_rate = params["video_bitrate"] * 1000
                    options["maxrate"] = str(int(params["video_bitrate"] * 1500))
                    options["bufsize"] = str(params["video_bitrate"] * 2000)
                if params.get("crf") is not None:
                    options["crf"] = str(params["crf"])
                vout.options = options
            if ain is not None:
                agraph = _graph(ain, _audio_filters(params), audio=True)
                aout = out.add_stream(
                    AUDIO_CODECS[params["audio_codec"]], rate=params["sample_rate"]
                )
                aout.layout = "mono" if params["channels"] == 1 else "stereo"
                aout.bit_rate = params["audio_bitrate"] * 1000
            if start:
                inp.seek(int(start / av.time_base), backward=True)
            streams = [s for s in (vin, ain) if s is not None]
            encoder = EncoderThread(out, [s for s in (vout, aout) if s is not None])
            try:
                _pump(
                    inp,
                    streams,
                    vin,
                    (vgraph, vout),
                    (agraph, aout),
                    encoder,
                    control,
                    start,
                    stop_at,
                    span,
                )
                for graph, stream in ((vgraph, vout), (agraph, aout)):
                    if graph is not None:
                        graph.push(None)
                        for frame in _drain(graph):
                            encoder.put(stream, frame)
            except BaseException:
                encoder.abandon()
                raise
            encoder.close()
        except av.error.FFmpegError as exc:
            raise MediaFailure(
                ErrorCode.CONTENT_MALFORMED, f"the input could not be transcoded: {exc}"
            ) from None
        finally:
            out.close()
    control.progress(100)
    return _describe(out_path)


def _pump(inp, streams, vin, video, audio, encoder, control, start, stop_at, span) -> None:
    """Decode both streams in file order and filter them; trim to [start, stop_at)."""
    shifts: dict[int, int] = {}
    for packet in inp.demux(streams):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue  # one damaged packet: FFmpeg conceals it, so do we
        is_video = packet.stream is vin
        graph, stream = video if is_video else audio
        for frame in frames:
            control.check()
            t = frame.time
            if t is None or t < start or (stop_at and t >= stop_at):
                continue
            # timestamps start at 0 in the output, each stream from its own first frame
            frame.pts -= shifts.setdefault(packet.stream.index, frame.pts)
            graph.push(frame)
            for out_frame in _drain(graph):
                encoder.put(stream, out_frame)
            if is_video or vin is None:
                control.progress(100 * (t - start) / span)


def _describe(path: Path) -> dict[str, Any]:
    info = probe(path, str(path.name))
    streams = info["streams"]
    video = next((s for s in streams if s["type"] == "video"), {})
    audio = next((s for s in streams if s["type"] == "audio"), {})
    return {
        "duration": info["duration"],
        "width": info["width"],
        "height": info["height"],
        "bitrate": info["bitrate"],
        "video_codec": video.get("codec", ""),
        "audio_codec": audio.get("codec", ""),
    }
