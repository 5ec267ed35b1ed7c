"""How many requests to keep in flight, to an origin or to parents: start low,
double while it pays.

More connections help when each one is held back (a round trip per piece, an origin
that caps every connection); they cost when the host's cores are the limit. On the
2-core reference VM, 1 GiB over loopback took 1.0-1.3 s of engine time with 2
workers and 1.3-1.8 s with 8, while through a 25 ms link 2 workers were 2.4x slower
than 8; one child on 2 cores took its parents' bytes at 1.19-1.28 GB/s with 2
requests and erratically (0.49-1.41) with 8. No fixed count serves all of these,
so the count is found per download: measure a window, double, measure again, keep
the step only if throughput rose by `gain`, and try again now and then in case the
link changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

START = 2


@dataclass(slots=True)
class Ramp:
    """Decides the worker count from (time, bytes so far) samples; no I/O of its own."""

    maximum: int
    start: int = START
    min_window: float = 0.1  # seconds of bytes behind each measurement, at least
    gain: float = 1.15  # a step must raise throughput this much to be kept
    retry_after: float = 2.0  # seconds before trying more workers again after a step back
    piece_seconds: float = field(init=False, default=0.0)  # typical time to fetch a piece
    target: int = field(init=False)
    _mark: tuple[float, int] | None = field(init=False, default=None)
    _settling: bool = field(init=False, default=True)  # next window is not measured
    rate: float = field(init=False, default=0.0)  # bytes/s in the last window measured
    _base: float = field(init=False, default=0.0)  # bytes/s at the settled worker count
    _probe_from: int = field(init=False, default=0)  # worker count before a step up, or 0
    _next_probe: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError(f"maximum workers must be at least 1, not {self.maximum}")
        self.target = max(1, min(self.start, self.maximum))

    @property
    def window(self) -> float:
        # a window shorter than two pieces measures where pieces happen to end
        return max(self.min_window, 2 * self.piece_seconds)

    def piece_took(self, seconds: float) -> None:
        self.piece_seconds = (
            seconds if not self.piece_seconds else 0.7 * self.piece_seconds + 0.3 * seconds
        )

    def observe(self, now: float, total: int) -> int:
        """Feed the bytes fetched so far; returns the worker count wanted from now."""
        if self._mark is None:
            self._mark = (now, total)
            return self.target
        began, before = self._mark
        if now - began < self.window:
            return self.target
        self._mark = (now, total)
        if self._settling:  # new connections were still starting in this window
            self._settling = False
            return self.target
        if total == before:
            # nothing arrived: the first bytes of a far link are still on their way, and
            # a zero would make any step look like a gain
            return self.target
        self.rate = rate = (total - before) / (now - began)
        if self._probe_from:
            if rate >= self._base * self.gain:
                self._base, self._probe_from = rate, 0
            else:
                self.target, self._probe_from = self._probe_from, 0
                self._next_probe = now + self.retry_after
                self._settling = True
                return self.target
        else:
            self._base = rate
        if self.target < self.maximum and now >= self._next_probe:
            self._probe_from = self.target
            self.target = min(self.maximum, self.target * 2)
            self._settling = True
        return self.target
