"""Garbage collection: by TTL since last access, then by disk watermark (LRU)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from damselfly.storage.metadata import TaskRecord
from damselfly.storage.store import DiskUsage, Store


@dataclass(frozen=True, slots=True)
class GCPolicy:
    ttl_seconds: float = 30 * 24 * 3600
    high_watermark: float = 0.80
    low_watermark: float = 0.60


@dataclass(slots=True)
class GCReport:
    evicted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    skipped_busy: list[str] = field(default_factory=list)


def collect(
    store: Store,
    policy: GCPolicy,
    *,
    now: float | None = None,
    disk_usage: Callable[[], DiskUsage] | None = None,
    free_at_least: int = 0,
) -> GCReport:
    """Evict expired tasks, then least recently used ones until under the low watermark.

    `free_at_least` keeps evicting past the watermark until that many bytes are free
    (a download that did not fit). A task whose lock is held (being downloaded or
    served) is never touched.
    """
    now = time.time() if now is None else now
    usage_of = disk_usage or store.disk_usage
    report = GCReport()

    def evict(record: TaskRecord) -> bool:
        lock = store.lock(record.id)
        if not lock.acquire(blocking=False):
            report.skipped_busy.append(record.id)
            return False
        try:
            report.freed_bytes += store.delete(record.id)
        finally:
            lock.release(unlink=True)
        report.evicted.append(record.id)
        return True

    remaining: list[TaskRecord] = []
    for record in store.metadata.tasks(oldest_access_first=True):
        if now - record.accessed_at > policy.ttl_seconds and evict(record):
            continue
        remaining.append(record)

    usage = usage_of()
    needs_space = usage.free < free_at_least
    if usage.used_fraction <= policy.high_watermark and not needs_space:
        return report
    target = policy.low_watermark * usage.total
    if needs_space:
        target = min(target, usage.total - free_at_least)
    used = usage.used
    for record in remaining:
        if used <= target:
            break
        before = report.freed_bytes
        if evict(record):
            used -= report.freed_bytes - before
    return report
