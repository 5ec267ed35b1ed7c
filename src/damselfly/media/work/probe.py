"""What the input is: container, duration, bitrate, and each stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from damselfly.media.states import ErrorCode
from damselfly.media.work.control import MediaFailure


def open_input(path: Path, what: str) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaFailure(
            ErrorCode.CONTENT_MALFORMED,
            f"{what} is not a media file FFmpeg can read ({exc}); check the input",
        ) from None


def _rate(value: Any) -> float:
    return float(value) if value else 0.0


def probe(path: Path, what: str) -> dict[str, Any]:
    """Media info as the task detail shows it; MediaFailure for unreadable input."""
    with open_input(path, what) as container:
        streams = []
        for stream in container.streams:
            ctx = stream.codec_context
            entry: dict[str, Any] = {
                "index": stream.index,
                "type": stream.type,
                "codec": ctx.codec.canonical_name if ctx else "",
                "bitrate": int(ctx.bit_rate or 0) if ctx else 0,
            }
            if stream.type == "video":
                entry.update(
                    width=ctx.width,
                    height=ctx.height,
                    fps=round(_rate(stream.average_rate or stream.guessed_rate), 3),
                    pix_fmt=ctx.pix_fmt or "",
                )
            elif stream.type == "audio":
                entry.update(sample_rate=ctx.sample_rate, channels=ctx.channels)
            streams.append(entry)
        if not streams:
            raise MediaFailure(ErrorCode.CONTENT_MALFORMED, f"{what} has no audio or video streams")
        duration = container.duration / av.time_base if container.duration else 0.0
        if not duration:
            for stream in container.streams:
                if stream.duration and stream.time_base:
                    duration = max(duration, float(stream.duration * stream.time_base))
        video = next((s for s in streams if s["type"] == "video"), None)
        return {
            "size": path.stat().st_size,
            "container": container.format.name,
            "duration": round(duration, 3),
            "bitrate": int(container.bit_rate or 0),
            "width": video["width"] if video else 0,
            "height": video["height"] if video else 0,
            "fps": video["fps"] if video else 0,
            "streams": streams,
        }
