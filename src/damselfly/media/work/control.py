"""Cancellation per frame and progress at a steady pace."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from damselfly.errors import DamselflyError


class Cancelled(Exception):
    """The worker is stopping; the subtask's staged files are discarded."""


class MediaFailure(DamselflyError):
    """A subtask failed for a reason the user can act on; `code` is the MPS-style code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Control:
    """Shared by a worker and the step it runs: `check()` per frame, `progress(0-100)`."""

    def __init__(
        self,
        stop: threading.Event,
        report: Callable[[int], None] = lambda _: None,
        *,
        interval: float = 0.5,
    ) -> None:
        self.stop = stop
        self._report = report
        self._interval = interval
        self._last = 0.0
        self._percent = -1

    def check(self) -> None:
        if self.stop.is_set():
            raise Cancelled()

    def progress(self, percent: float) -> None:
        """Report at most every `interval` seconds (and always 100)."""
        value = max(0, min(100, int(percent)))
        now = time.monotonic()
        if value != self._percent and (value == 100 or now - self._last >= self._interval):
            self._last, self._percent = now, value
            self._report(value)
