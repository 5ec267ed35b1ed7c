"""Back-to-source clients: fetch a task's bytes from its origin."""

from damselfly.source.http import HTTPSource, RangeNotSupported, SourceStat
from damselfly.source.retry import RetryPolicy

__all__ = ["HTTPSource", "RangeNotSupported", "RetryPolicy", "SourceStat"]
