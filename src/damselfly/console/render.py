"""Jinja2 set-up: templates from the package, and the filters the pages share."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates

from damselfly.units import format_size

HERE = Path(__file__).parent

STATE_ICONS = {
    # plain symbols: a server without emoji fonts still draws them
    "PENDING": ("○", "pending"), "SUCCESS": ("✔", "success"), "FAILURE": ("✖", "failure"),
    "WAITING": ("○", "waiting"), "PROCESSING": ("⚙", "processing"), "FINISH": ("✔", "finish"),
    "FAIL": ("✖", "fail"),
}  # fmt: skip


def when(value: Any) -> str:
    """A UTC time as `2026-11-23 03:22:05`; empty for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["when"] = when
    env.filters["size"] = lambda n: format_size(n or 0)
    env.globals["icons"] = STATE_ICONS
    return templates
