"""A create request, checked and frozen: every template's parameters copied in.

The frozen request is what the task row keeps and what a worker (and a restart) runs;
nothing in it refers to a template that could change later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from damselfly.errors import InvalidInput
from damselfly.media.states import SubtaskType
from damselfly.media.templates import Template, params_dict, parse_params

_OFFSET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|%)?\s*$")
MAX_SUBTASKS = 50


@dataclass(frozen=True, slots=True)
class Offset:
    """A point in the media: seconds, or a percentage of its duration."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, text: Any, what: str) -> Offset:
        if isinstance(text, int | float) and not isinstance(text, bool) and text >= 0:
            return cls(float(text))
        match = _OFFSET.match(str(text)) if isinstance(text, str) else None
        if not match:
            raise InvalidInput(f"{what} {text!r} is not an offset like 3.5s or 10%")
        value, percent = float(match.group(1)), match.group(2) == "%"
        if percent and value > 100:
            raise InvalidInput(f"{what} {text!r} is beyond 100%")
        return cls(value, percent)

    def seconds(self, duration: float) -> float:
        return duration * self.value / 100 if self.percent else self.value

    def __str__(self) -> str:
        # positional digits of the shortest repr: exact, and never 1e-05 (not an offset)
        digits = f"{Decimal(repr(self.value)):f}"
        if "." in digits:
            digits = digits.rstrip("0").rstrip(".")
        return f"{digits}{'%' if self.percent else 's'}"


TemplateLookup = Callable[[int, str], Template]  # (template ID, kind) -> template


def _list(request: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = request.get(key) or []
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise InvalidInput(f"{key} must be a list of objects")
    return items


def _template(
    item: Mapping[str, Any], kind: str, lookup: TemplateLookup, default: int | None, key: str
) -> tuple[int, dict[str, Any]]:
    template_id = item.get("template_id", default)
    if isinstance(template_id, bool) or not isinstance(template_id, int):
        raise InvalidInput(f"{key}: template_id must be an integer")
    template = lookup(template_id, kind)
    params = dict(template.params)
    overrides = item.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise InvalidInput(f"{key}: overrides must be an object")
    params.update(overrides)
    if kind == "transcode" and "enhancement" in item:
        params["enhancement"] = item["enhancement"]
    return template_id, params_dict(parse_params(kind, params))


def _offsets(item: Mapping[str, Any], key: str) -> dict[str, str]:
    out = {}
    for name in ("start", "end"):
        if item.get(name) is not None:
            out[name] = str(Offset.parse(item[name], f"{key}.{name}"))
    return out


def freeze_subtasks(request: Mapping[str, Any], lookup: TemplateLookup) -> list[dict[str, Any]]:
    """The subtasks a request asks for, in order, each with its parameters frozen."""
    subtasks: list[dict[str, Any]] = []

    def add(kind: SubtaskType, template_id: int | None, params: dict, **args: Any) -> None:
        subtasks.append(
            {"type": kind.value, "template_id": template_id, "params": params, "args": args}
        )

    for key, kind in (("transcodes", None), ("hls", SubtaskType.HLS)):
        for item in _list(request, key):
            template_id, params = _template(item, "transcode", lookup, None, key)
            if kind is SubtaskType.HLS:
                params["container"] = "hls"
            is_hls = params["container"] == "hls"
            add(
                SubtaskType.HLS if is_hls else SubtaskType.TRANSCODE,
                template_id,
                params,
                **_offsets(item, key),
            )
    for item in _list(request, "snapshots"):
        template_id, params = _template(item, "snapshot", lookup, 10, "snapshots")
        offsets = item.get("offsets")
        if not isinstance(offsets, list) or not offsets or len(offsets) > 100:
            raise InvalidInput("snapshots: offsets must be a list of 1-100 offsets like 3.5s, 10%")
        frozen = [str(Offset.parse(o, "snapshots offset")) for o in offsets]
        add(SubtaskType.SNAPSHOT, template_id, params, offsets=frozen)
    for item in _list(request, "sampled_snapshots"):
        template_id, params = _template(item, "snapshot", lookup, 10, "sampled_snapshots")
        interval = Offset.parse(item.get("interval", "10%"), "sampled_snapshots.interval")
        if interval.value <= 0:
            raise InvalidInput("sampled_snapshots.interval must be above zero")
        limit = item.get("max_count", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("sampled_snapshots.max_count must be within 1-1000")
        add(
            SubtaskType.SAMPLED_SNAPSHOT,
            template_id,
            params,
            interval=str(interval),
            max_count=limit,
        )
    for item in _list(request, "image_sprites"):
        template_id, params = _template(item, "image_sprite", lookup, 30, "image_sprites")
        add(SubtaskType.IMAGE_SPRITE, template_id, params)
    for item in _list(request, "animated_images"):
        template_id, params = _template(item, "animated_image", lookup, 40, "animated_images")
        offsets = _offsets(item, "animated_images")
        add(
            SubtaskType.ANIMATED_IMAGE,
            template_id,
            params,
            start=offsets.get("start", "0s"),
            end=offsets.get("end", "3s"),
        )
    for item in _list(request, "enhancements"):
        template_id, params = _template(item, "transcode", lookup, 100030, "enhancements")
        if not params.get("enhancement"):
            raise InvalidInput("enhancements: give an enhancement object (denoise, sharpen, …)")
        add(SubtaskType.ENHANCEMENT, template_id, params)
    for key, kind in (
        ("content_understanding", SubtaskType.UNDERSTANDING),
        ("review", SubtaskType.REVIEW),
    ):
        value = request.get(key)
        if value in (None, False):
            continue
        if value is not True and not isinstance(value, Mapping):
            raise InvalidInput(f"{key} must be true or an object of options")
        add(kind, None, {}, **(dict(value) if isinstance(value, Mapping) else {}))
    if not subtasks:
        raise InvalidInput(
            "nothing to do: give transcodes, hls, snapshots, sampled_snapshots, "
            "image_sprites, animated_images, enhancements, content_understanding or review"
        )
    if len(subtasks) > MAX_SUBTASKS:
        raise InvalidInput(f"at most {MAX_SUBTASKS} subtasks per task")
    return subtasks


def check_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -10 <= value <= 10:
        raise InvalidInput(f"priority must be an integer within -10..10, not {value!r}")
    return value
