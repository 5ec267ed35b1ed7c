"""Templates: the presets of the reference (immutable) and the checks custom ones pass.

A template is a kind and its parameters. When a task is created, the parameters are
copied into its request: a later change to a custom template never changes a task,
and a restart re-runs exactly what was asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from damselfly.errors import InvalidInput

KINDS = ("transcode", "snapshot", "image_sprite", "animated_image")
CUSTOM_ID_START = 1_000_001  # preset IDs stay below; custom ones count up from here

VIDEO_CODECS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
AUDIO_CODECS = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame"}
CONTAINERS = ("mp4", "hls", "webm")
IMAGE_FORMATS = ("jpg", "png", "webp")


def _number(value: Any, name: str, low: float, high: float, *, integer: bool = True) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise InvalidInput(f"{name} must be {what} within {low:g}-{high:g}, not {value!r}")
    return value


def _choice(value: Any, name: str, allowed: tuple[Any, ...] | Mapping[str, Any]) -> Any:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise InvalidInput(f"{name} must be one of {shown}, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Enhancement:
    """What an enhancement subtask adds to a transcode (all optional)."""

    denoise: float = 0.0  # 0-1: atadenoise strength
    sharpen: float = 0.0  # 0-1: contrast-adaptive sharpening
    brightness: float = 0.0  # -1..1 levels shift
    contrast: float = 1.0  # 0.5-2
    audio_denoise: bool = False
    loudness: float | None = None  # target LUFS, e.g. -16 (loudnorm, resampled after)

    def check(self) -> Enhancement:
        _number(self.denoise, "denoise", 0, 1, integer=False)
        _number(self.sharpen, "sharpen", 0, 1, integer=False)
        _number(self.brightness, "brightness", -1, 1, integer=False)
        _number(self.contrast, "contrast", 0.5, 2, integer=False)
        if self.loudness is not None:
            _number(self.loudness, "loudness", -70, -5, integer=False)
        return self


@dataclass(frozen=True, slots=True)
class Transcode:
    container: str = "mp4"
    video_codec: str = "h264"
    width: int = 0  # 0: follow the aspect ratio from the other side (or the source)
    height: int = 0
    fps: float = 0  # 0: the source's
    video_bitrate: int = 0  # kbps; 0: CRF only
    crf: int | None = None
    gop: int = 0  # frames; 0: 2 x fps (even HLS segments)
    audio_codec: str = "aac"
    audio_bitrate: int = 64  # kbps
    sample_rate: int = 44100
    channels: int = 2
    remove_video: bool = False
    remove_audio: bool = False
    enhancement: Enhancement | None = None

    def check(self) -> Transcode:
        _choice(self.container, "container", CONTAINERS)
        _choice(self.video_codec, "video_codec", VIDEO_CODECS)
        _choice(self.audio_codec, "audio_codec", AUDIO_CODECS)
        _number(self.width, "width", 0, 7680)
        _number(self.height, "height", 0, 4320)
        _number(self.fps, "fps", 0, 120, integer=False)
        _number(self.video_bitrate, "video_bitrate", 0, 100_000)
        if self.crf is not None:
            _number(self.crf, "crf", 0, 51)
        _number(self.gop, "gop", 0, 1000)
        _number(self.audio_bitrate, "audio_bitrate", 8, 512)
        _choice(self.sample_rate, "sample_rate", (8000, 16000, 22050, 32000, 44100, 48000))
        _number(self.channels, "channels", 1, 2)
        if self.width % 2 or self.height % 2:
            raise InvalidInput("width and height must be even (4:2:0 video)")
        if self.container == "webm" and self.video_codec not in ("vp9", "av1"):
            raise InvalidInput("a webm container takes vp9 or av1 video")
        if self.container == "hls" and self.audio_codec == "opus":
            raise InvalidInput("hls takes aac or mp3 audio")
        if self.remove_video and self.remove_audio:
            raise InvalidInput("remove_video and remove_audio together leave nothing")
        if self.enhancement is not None:
            self.enhancement.check()
        return self


@dataclass(frozen=True, slots=True)
class Snapshot:
    format: str = "jpg"
    width: int = 0
    height: int = 0

    def check(self) -> Snapshot:
        _choice(self.format, "format", IMAGE_FORMATS)
        _number(self.width, "width", 0, 7680)
        _number(self.height, "height", 0, 4320)
        return self


@dataclass(frozen=True, slots=True)
class ImageSprite:
    interval: float = 10.0  # seconds between tiles
    columns: int = 10
    rows: int = 10
    tile_width: int = 142
    tile_height: int = 80
    format: str = "jpg"

    def check(self) -> ImageSprite:
        _number(self.interval, "interval", 0.1, 3600, integer=False)
        _number(self.columns, "columns", 1, 50)
        _number(self.rows, "rows", 1, 50)
        _number(self.tile_width, "tile_width", 16, 1920)
        _number(self.tile_height, "tile_height", 16, 1080)
        _choice(self.format, "format", IMAGE_FORMATS)
        return self


@dataclass(frozen=True, slots=True)
class AnimatedImage:
    format: str = "gif"
    fps: float = 10
    width: int = 320
    height: int = 0

    def check(self) -> AnimatedImage:
        _choice(self.format, "format", ("gif", "webp"))
        _number(self.fps, "fps", 1, 30, integer=False)
        _number(self.width, "width", 0, 1920)
        _number(self.height, "height", 0, 1080)
        return self


_PARAMS = {
    "transcode": Transcode,
    "snapshot": Snapshot,
    "image_sprite": ImageSprite,
    "animated_image": AnimatedImage,
}


def parse_params(kind: str, params: Mapping[str, Any]) -> Any:
    """Typed, checked parameters of a `kind` template; unknown keys are refused."""
    cls = _PARAMS[_choice(kind, "template kind", KINDS)]
    if not isinstance(params, Mapping):
        raise InvalidInput(f"{kind} template parameters must be an object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInput(
            f"unknown {kind} template parameter(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known))}"
        )
    values = dict(params)
    if kind == "transcode" and values.get("enhancement") is not None:
        enhancement = values["enhancement"]
        if not isinstance(enhancement, Mapping):
            raise InvalidInput("enhancement must be an object")
        extra = sorted(set(enhancement) - {f.name for f in fields(Enhancement)})
        if extra:
            raise InvalidInput(f"unknown enhancement parameter(s) {', '.join(extra)}")
        values["enhancement"] = Enhancement(**enhancement)
    return cls(**values).check()


def params_dict(params: Any) -> dict[str, Any]:
    return asdict(params)


@dataclass(frozen=True, slots=True)
class Template:
    id: int
    kind: str
    name: str
    params: dict[str, Any]
    preset: bool = True
    comment: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "preset": self.preset,
            "comment": self.comment,
            "params": self.params,
        }


def _transcode_presets() -> list[Template]:
    # (MP4 ID, HLS ID, height, video kbps, audio kbps) as the reference lists them
    rows = [
        (100010, 100210, 360, 400, 64),
        (100020, 100220, 540, 1000, 64),
        (100030, 100230, 720, 1800, 128),
        (100040, 100240, 1080, 2500, 128),
        (100070, 100270, 1440, 3000, 160),
        (100080, 100280, 2160, 6000, 160),
    ]
    presets = []
    for mp4, hls, height, video, audio in rows:
        for template_id, container in ((mp4, "mp4"), (hls, "hls")):
            params = Transcode(
                container=container,
                height=height,
                fps=25,
                video_bitrate=video,
                audio_bitrate=audio,
            )
            presets.append(
                Template(
                    template_id,
                    "transcode",
                    f"{container.upper()}-H.264-{height}p",
                    params_dict(params),
                    comment=f"H.264 {video} kbps 25 fps, AAC {audio} kbps 44.1 kHz stereo",
                )
            )
    return presets


PRESETS: dict[int, Template] = {
    t.id: t
    for t in [
        *_transcode_presets(),
        Template(10, "snapshot", "JPG source size", params_dict(Snapshot())),
        Template(20, "snapshot", "PNG 640 wide", params_dict(Snapshot("png", 640, 0))),
        Template(30, "image_sprite", "10 s, 10x10 tiles of 142x80", params_dict(ImageSprite())),
        Template(40, "animated_image", "GIF 10 fps, 320 wide", params_dict(AnimatedImage())),
        Template(
            50,
            "animated_image",
            "WebP 15 fps, 480 wide",
            params_dict(AnimatedImage("webp", 15, 480)),
        ),
    ]
}
