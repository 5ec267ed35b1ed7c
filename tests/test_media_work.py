"""What a media worker makes, checked by probing the outputs (PyAV, real FFmpeg)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly.errors import InvalidInput
from damselfly.media.spec import Offset
from damselfly.media.states import ErrorCode
from damselfly.media.templates import PRESETS, parse_params
from damselfly.media.work import images
from damselfly.media.work.analysis import review, understand
from damselfly.media.work.control import Cancelled, Control, MediaFailure
from damselfly.media.work.probe import probe as probe_input
from damselfly.media.work.staging import STAGING_PREFIX, Staging
from damselfly.media.work.transcode import transcode
from tests.support.media import MOVING, TONE_ONLY, make_clip, probe, stream


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


def _control(reports: list[int] | None = None) -> Control:
    return Control(
        threading.Event(), (reports.append if reports is not None else lambda _: None), interval=0.0
    )


def _staged(tmp_path: Path, work: Callable[[Staging], object]) -> tuple[object, list[dict]]:
    with Staging(tmp_path, "t") as staging:
        made = work(staging)
        outputs = staging.commit()
    return made, outputs


def test_mp4_preset_keeps_aspect_duration_and_puts_moov_first(clip: Path, tmp_path: Path) -> None:
    reports: list[int] = []
    params = PRESETS[100010].params
    _facts, outputs = _staged(
        tmp_path, lambda s: transcode(clip, s, "out.mp4", params, _control(reports))
    )
    info = probe(tmp_path / "out.mp4")
    video, audio = stream(info, "video"), stream(info, "audio")
    assert (video["codec"], video["height"], video["width"]) == ("h264", 360, 480)
    assert video["fps"] == 25.0
    assert (audio["codec"], audio["sample_rate"], audio["channels"]) == ("aac", 44100, 2)
    assert abs(info["duration"] - 4.0) < 0.1
    head = (tmp_path / "out.mp4").read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (
        head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")
    )
    assert reports[-1] == 100 and reports == sorted(reports)
    assert [o["name"] for o in outputs] == ["out.mp4"]
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))


def test_hls_segments_follow_the_gop(clip: Path, tmp_path: Path) -> None:
    params = PRESETS[100210].params
    _, outputs = _staged(tmp_path, lambda s: transcode(clip, s, "out.m3u8", params, _control()))
    playlist = (tmp_path / "out.m3u8").read_text()
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist)]
    assert len(durations) == 2 and all(abs(d - 2.0) < 0.05 for d in durations)
    assert "#EXT-X-ENDLIST" in playlist
    assert outputs[0]["name"] == "out.m3u8"  # the playlist is the main output
    assert {o["name"] for o in outputs[1:]} == set(re.findall(r"^(out_\d+\.ts)$", playlist, re.M))
    assert abs(probe(tmp_path / "out.m3u8")["duration"] - 4.0) < 0.1


def test_trimmed_enhanced_transcode_resamples_after_loudnorm(clip: Path, tmp_path: Path) -> None:
    params = parse_params("transcode", {**PRESETS[100010].params, "enhancement": {
        "denoise": 0.5, "sharpen": 0.5, "brightness": 0.1, "contrast": 1.2,
        "audio_denoise": True, "loudness": -16}})  # fmt: skip
    from dataclasses import asdict

    transcode_params = asdict(params)
    _staged(tmp_path, lambda s: transcode(clip, s, "e.mp4", transcode_params, _control(),
                                           start=0.5, end=3.0))  # fmt: skip
    info = probe(tmp_path / "e.mp4")
    assert abs(info["duration"] - 2.5) < 0.1
    assert stream(info, "audio")["sample_rate"] == 44100  # loudnorm alone would give 192 kHz


def test_snapshots_are_frame_accurate(clip: Path, tmp_path: Path) -> None:
    params = PRESETS[10].params
    times = [Offset.parse(o, "o").seconds(4.0) for o in ("1.5s", "50%", "0", "99s")]
    described, outputs = _staged(
        tmp_path, lambda s: images.snapshots(clip, s, "snap", params, times, _control())
    )
    assert [o["name"] for o in outputs] == [f"snap_{n}.jpg" for n in range(4)]
    shown = [described[f"snap_{n}.jpg"]["time"] for n in range(4)]
    assert shown[0] == pytest.approx(1.48, abs=0.001)  # the frame on screen at 1.5 s
    assert shown[1] == pytest.approx(2.0, abs=0.001)
    assert shown[2] == 0.0 and shown[3] == pytest.approx(3.96, abs=0.001)  # past the end: last
    assert probe(tmp_path / "snap_0.jpg")["streams"][0]["width"] == 320


def test_sprite_tiles_and_webvtt_cover_the_clip(clip: Path, tmp_path: Path) -> None:
    params = {**PRESETS[30].params, "interval": 0.5, "columns": 3, "rows": 2}
    described, _ = _staged(
        tmp_path, lambda s: images.image_sprite(clip, s, "sp", params, _control())
    )
    assert described["sp_0.jpg"]["tiles"] == 6 and described["sp_1.jpg"]["tiles"] == 2
    assert (described["sp_0.jpg"]["width"], described["sp_0.jpg"]["height"]) == (426, 160)
    cues = re.findall(
        r"(\S+) --> (\S+)\n(sp_\d\.jpg)#xywh=(\d+),(\d+),142,80", (tmp_path / "sp.vtt").read_text()
    )
    assert len(cues) == 8
    assert cues[0][:2] == ("00:00:00.000", "00:00:00.500") and cues[-1][1] == "00:00:04.000"
    assert cues[6][2:] == ("sp_1.jpg", "0", "0")


@pytest.mark.parametrize("template, frames", [(40, 15), (50, 22)])
def test_animated_images(clip: Path, tmp_path: Path, template: int, frames: int) -> None:
    params = PRESETS[template].params
    name = f"a.{params['format']}"
    facts, _ = _staged(tmp_path, lambda s: images.animated_image(clip, s, name, params, 0.5, 2.0,
                                                                  _control()))  # fmt: skip
    assert abs(facts["frames"] - frames) <= 1
    data = (tmp_path / name).read_bytes()
    assert data[:6] == b"GIF89a" if params["format"] == "gif" else data[8:12] == b"WEBP"
    if params["format"] == "gif":
        assert probe(tmp_path / name)["streams"][0]["width"] == 320


def test_understanding_finds_cuts_black_and_silence(clip: Path) -> None:
    result = understand(clip, {}, _control())
    assert result["scene_cuts"] == pytest.approx([1.0, 2.0], abs=0.05)
    bounds = [x for s in result["scenes"] for x in (s["start"], s["end"])]
    assert bounds == pytest.approx([0, 1, 1, 2, 2, 4], abs=0.05)
    [black] = result["black"]
    assert (black["start"], black["end"]) == pytest.approx((1.0, 2.0), abs=0.05)
    [silence] = result["silence"]
    assert (silence["start"], silence["end"]) == pytest.approx((2.5, 3.0), abs=0.05)
    assert not 1.0 <= result["cover_time"] <= 2.0  # never a black frame
    assert result["loudness_lufs"] is not None and -30 < result["loudness_lufs"] < -10
    assert result["dominant_colours"][0]["rgb"] == "#101010"  # black is a quarter of it


def test_review_flags_by_rule(clip: Path) -> None:
    assert review(clip, {}, _control())["suggestion"] == "pass"
    strict = review(clip, {"black_max_seconds": 0.5, "silence_max_seconds": 0.3}, _control())
    assert strict["suggestion"] == "review"
    assert {s["label"] for s in strict["segments"]} == {"black", "silence"}


def test_cancel_stops_within_frames_and_leaves_no_output(tmp_path: Path) -> None:
    long = make_clip(tmp_path / "long.mp4", seconds=12, size=(640, 360), graph=MOVING)
    out = tmp_path / "out"
    out.mkdir()
    stop = threading.Event()
    control = Control(stop, lambda p: stop.set() if p >= 10 else None, interval=0.0)
    started = time.monotonic()
    with pytest.raises(Cancelled), Staging(out, "x") as staging:
        transcode(long, staging, "o.mp4", PRESETS[100030].params, control)
    assert time.monotonic() - started < 10
    assert list(out.iterdir()) == []


def test_bad_inputs_get_their_codes(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not media" * 1000)
    with pytest.raises(MediaFailure) as caught:
        probe_input(garbage, "the input garbage.mp4")
    assert caught.value.code == ErrorCode.CONTENT_MALFORMED and "garbage.mp4" in str(caught.value)
    tone = make_clip(tmp_path / "tone.m4a", graph=TONE_ONLY, video=False)
    with pytest.raises(MediaFailure) as caught, Staging(tmp_path, "n") as staging:
        transcode(tone, staging, "o.mp4", PRESETS[100010].params, _control())
    assert caught.value.code == ErrorCode.NO_VIDEO
    with pytest.raises(MediaFailure) as caught, Staging(tmp_path, "n") as staging:
        images.snapshots(tone, staging, "s", PRESETS[10].params, [1.0], _control())
    assert caught.value.code == ErrorCode.NO_VIDEO


@given(
    value=st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False),
    percent=st.booleans(),
)
def test_offsets_round_trip(value, percent: bool) -> None:
    if percent:
        value = value % 100
    text = f"{value:f}{'%' if percent else 's'}"  # as people write them: 3.5s, 10%
    parsed = Offset.parse(text, "offset")
    assert Offset.parse(str(parsed), "offset") == parsed
    assert parsed.seconds(200.0) == pytest.approx(float(value) * (2 if percent else 1))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"video_codec": "mpeg2"}, "video_codec"),
        ({"width": 641}, "even"),
        ({"container": "webm"}, "webm"),
        ({"sample_rate": 12345}, "sample_rate"),
        ({"bogus": 1}, "unknown transcode template parameter"),
        ({"enhancement": {"loudness": 5}}, "loudness"),
    ],
)
def test_bad_template_parameters_are_refused(params: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_params("transcode", {**PRESETS[100010].params, **params})


@pytest.mark.parametrize(
    "overrides, video, audio",
    [
        ({"video_codec": "h265"}, "hevc", "aac"),
        ({"container": "webm", "video_codec": "vp9", "audio_codec": "opus",
          "sample_rate": 48000}, "vp9", "opus"),
        ({"video_codec": "av1", "video_bitrate": 0, "crf": 40}, "av1", "aac"),
        ({"remove_audio": True}, "h264", None),
    ],
)  # fmt: skip
def test_other_codecs_the_wheel_carries(
    clip: Path, tmp_path: Path, overrides: dict, video: str, audio: str | None
) -> None:
    from dataclasses import asdict

    params = asdict(parse_params("transcode", {**PRESETS[100010].params, "height": 144,
                                               "width": 192, **overrides}))  # fmt: skip
    name = f"o.{'webm' if params['container'] == 'webm' else 'mp4'}"
    _staged(tmp_path, lambda s: transcode(clip, s, name, params, _control()))
    info = probe(tmp_path / name)
    assert stream(info, "video")["codec"] == video
    assert stream(info, "video")["height"] == 144
    assert abs(info["duration"] - 4.0) < 0.1
    kinds = {s["type"] for s in info["streams"]}
    assert ("audio" in kinds) == (audio is not None)
    if audio:
        assert stream(info, "audio")["codec"] == audio
