"""Retry with exponential backoff for transient origin failures (5xx, resets)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from damselfly.errors import SourceError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    first_backoff: float = 0.2
    max_backoff: float = 3.0

    def delays(self) -> list[float]:
        return [min(self.max_backoff, self.first_backoff * 2**n) for n in range(self.attempts - 1)]


def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], T],
    *,
    on_retry: Callable[[SourceError, float], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run `attempt` until it succeeds, a non-retryable SourceError, attempts run out,
    or `stop` is set while waiting to try again."""
    delays = policy.delays()
    while True:
        try:
            return attempt()
        except SourceError as exc:
            if not exc.retryable or not delays:
                raise
            delay = delays.pop(0)
            if on_retry:
                on_retry(exc, delay)
            if stop is not None and stop.wait(delay):
                raise
            if stop is None:
                threading.Event().wait(delay)
