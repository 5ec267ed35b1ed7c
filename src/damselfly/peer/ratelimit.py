"""An upload rate cap shared by every piece a peer serves."""

from __future__ import annotations

import asyncio
import time


class RateLimit:
    """Reserve time for n bytes at `rate` bytes/s; waits until the reservation starts.

    Whole pieces go out with sendfile, so the cap holds on average over pieces,
    not within one.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next_free = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        start = max(now, self._next_free)
        self._next_free = start + n / self.rate
        if start > now:
            await asyncio.sleep(start - now)
