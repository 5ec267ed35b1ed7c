"""One line per event with `key="value"` pairs, greppable the way Dragonfly's logs are.

2026-11-22T21:15:00.123Z INFO download task succeeded task_id="…" url="…"
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from damselfly.redact import redact


def _quote(value: object) -> str:
    text = redact(str(value))  # passwords and signatures in URLs never reach a log
    # URLs stay literal so `grep "<url>"` finds them; only what would break the line is escaped.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def format_event(level: str, message: str, fields: dict[str, object], now: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    pairs = " ".join(f'{key}="{_quote(value)}"' for key, value in fields.items())
    return f"{stamp} {level} {message} {pairs}".rstrip() + "\n"


class EventLog:
    """Appends events to `<log_dir>/<component>.log`; each event is a single write()."""

    def __init__(self, log_dir: Path, component: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / f"{component}.log"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _write(self, level: str, message: str, fields: dict[str, object]) -> None:
        if self._fd >= 0:
            os.write(self._fd, format_event(level, message, fields, time.time()).encode())

    def info(self, message: str, **fields: object) -> None:
        self._write("INFO", message, fields)

    def warning(self, message: str, **fields: object) -> None:
        self._write("WARN", message, fields)

    def error(self, message: str, **fields: object) -> None:
        self._write("ERROR", message, fields)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
