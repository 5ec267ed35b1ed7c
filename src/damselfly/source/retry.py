"""Retry with exponential backoff for transient origin failures (5xx, resets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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


async def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    on_retry: Callable[[SourceError, float], None] | None = None,
) -> T:
    """Run `attempt` until it succeeds, a non-retryable SourceError, or attempts run out."""
    delays = policy.delays()
    while True:
        try:
            return await attempt()
        except SourceError as exc:
            if not exc.retryable or not delays:
                raise
            delay = delays.pop(0)
            if on_retry:
                on_retry(exc, delay)
            await asyncio.sleep(delay)
