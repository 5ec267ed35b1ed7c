"""One function per subtask kind: (input, staging, frozen spec) → outputs and result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damselfly.media.spec import Offset
from damselfly.media.states import SubtaskType
from damselfly.media.work import images
from damselfly.media.work.control import Control
from damselfly.media.work.staging import Staging
from damselfly.media.work.transcode import output_name, transcode


@dataclass
class StepInput:
    source: Path
    staging: Staging
    label: str  # file name stem for this subtask's outputs
    spec: dict[str, Any]
    duration: float  # of the input, seconds (from the probe)
    control: Control


@dataclass
class StepOutput:
    described: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name → facts
    result: dict[str, Any] | None = None


def _seconds(offset: str, duration: float) -> float:
    return Offset.parse(offset, "offset").seconds(duration)


def _transcode(step: StepInput) -> StepOutput:
    params, args = step.spec["params"], step.spec["args"]
    name = output_name(step.label, params)
    start = _seconds(args["start"], step.duration) if args.get("start") else 0.0
    end = _seconds(args["end"], step.duration) if args.get("end") else None
    facts = transcode(step.source, step.staging, name, params, step.control, start=start, end=end)
    return StepOutput({name: facts})


def _snapshot(step: StepInput) -> StepOutput:
    times = [_seconds(o, step.duration) for o in step.spec["args"]["offsets"]]
    return StepOutput(
        images.snapshots(
            step.source, step.staging, step.label, step.spec["params"], times, step.control
        )
    )


def _sampled(step: StepInput) -> StepOutput:
    args = step.spec["args"]
    interval = max(0.04, _seconds(args["interval"], step.duration))
    count = min(args["max_count"], max(1, int(step.duration / interval) + 1))
    times = [i * interval for i in range(count) if i * interval < max(step.duration, 0.001)]
    return StepOutput(
        images.snapshots(
            step.source, step.staging, step.label, step.spec["params"], times, step.control
        )
    )


def _sprite(step: StepInput) -> StepOutput:
    return StepOutput(
        images.image_sprite(
            step.source, step.staging, step.label, step.spec["params"], step.control
        )
    )


def _animated(step: StepInput) -> StepOutput:
    params, args = step.spec["params"], step.spec["args"]
    name = f"{step.label}.{params['format']}"
    facts = images.animated_image(
        step.source,
        step.staging,
        name,
        params,
        _seconds(args["start"], step.duration),
        _seconds(args["end"], step.duration),
        step.control,
    )
    return StepOutput({name: facts})


def _understanding(step: StepInput) -> StepOutput:
    from damselfly.media.work.analysis import understand

    return StepOutput(result=understand(step.source, step.spec["args"], step.control))


def _review(step: StepInput) -> StepOutput:
    from damselfly.media.work.analysis import review

    return StepOutput(result=review(step.source, step.spec["args"], step.control))


STEPS: dict[str, Callable[[StepInput], StepOutput]] = {
    SubtaskType.TRANSCODE: _transcode,
    SubtaskType.HLS: _transcode,
    SubtaskType.ENHANCEMENT: _transcode,
    SubtaskType.SNAPSHOT: _snapshot,
    SubtaskType.SAMPLED_SNAPSHOT: _sampled,
    SubtaskType.IMAGE_SPRITE: _sprite,
    SubtaskType.ANIMATED_IMAGE: _animated,
    SubtaskType.UNDERSTANDING: _understanding,
    SubtaskType.REVIEW: _review,
}
