"""dfget's progress bar: `[00:00:03] [=====>----] 42% (123.45 MiB/s, 3.1s)`."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from damselfly.peer.request import Progress
from damselfly.units import format_size

BAR_WIDTH = 60


def render(done: int, total: int | None, elapsed: float, rate: float) -> str:
    clock = time.strftime("%H:%M:%S", time.gmtime(elapsed))
    if total:
        fraction = min(1.0, done / total)
        filled = int(fraction * BAR_WIDTH)
        if filled >= BAR_WIDTH:
            bar = "=" * BAR_WIDTH
        else:
            bar = "=" * filled + ">" + "-" * (BAR_WIDTH - filled - 1)
        eta = (total - done) / rate if rate > 0 else 0.0
        return f"[{clock}] [{bar}] {fraction * 100:.0f}% ({format_size(rate)}/s, {eta:.1f}s)"
    if total == 0:
        return f"[{clock}] [{'=' * BAR_WIDTH}] 100% ({format_size(rate)}/s, 0.0s)"
    return f"[{clock}] [{'-' * BAR_WIDTH}] {format_size(done)} ({format_size(rate)}/s)"


class ProgressBar:
    """Redraws in place on a terminal; elsewhere prints only the final line."""

    def __init__(self, progress: Progress, stream: TextIO = sys.stderr) -> None:
        self.progress = progress
        self.stream = stream
        self.live = stream.isatty()
        self._started = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        moved = self.progress.done - self.progress.reused
        rate = moved / elapsed if elapsed > 0 else 0.0
        return render(self.progress.done, self.progress.total, elapsed, rate)

    async def run(self) -> None:
        while self.live:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            await asyncio.sleep(0.1)

    def finish(self, *, succeeded: bool) -> None:
        text = self.line()
        if self.live:
            self.stream.write("\r" + text + "\n")
        elif succeeded:
            self.stream.write(text + "\n")
        self.stream.flush()
