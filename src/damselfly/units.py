"""Byte sizes as people write them (`4MiB`, `8mib`, `4194304`) and as we print them."""

from __future__ import annotations

import re

from damselfly.errors import InvalidInput

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from `text`; KiB/MiB/GiB (and bare K/M/G) are binary, KB/MB/GB decimal."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match or match.group(2).lower() not in _UNITS:
        raise InvalidInput(f"invalid size {text!r}: use bytes or a unit, e.g. 4194304, 4MiB, 8mib")
    number, unit = match.groups()
    value = float(number) * _UNITS[unit.lower()]
    if value != int(value):
        raise InvalidInput(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def format_size(n: float) -> str:
    """`1.50 MiB` style, as the progress bar shows rates."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """Seconds from `30`, `30s`, `500ms`, `5m`, `2h`, `30d`."""
    match = _DURATION_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(
            f"invalid duration {text!r}: use seconds or e.g. 500ms, 30s, 5m, 2h, 30d"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
