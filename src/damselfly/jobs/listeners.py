"""Who hears about changes to jobs and media tasks, and which version they last heard.

Every listener hears the changes this process makes, as it makes them. Listeners
subscribed with `everywhere=True` (event streams) also hear the versions other
processes wrote, which the manager's change feed finds in the database. Webhooks do
not subscribe that way: the process that made a change sends its webhook, once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")
Listener = Callable[[T], None]


def version_of(stamp: datetime) -> str:
    """One spelling of a row's `updated_at`, whether the database kept the zone
    (PostgreSQL) or not (SQLite, naive UTC)."""
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp.isoformat()


class Listeners(Generic[T]):
    def __init__(self, remember: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._local: list[Listener[T]] = []
        self._everywhere: list[Listener[T]] = []
        self._heard: OrderedDict[Hashable, str] = OrderedDict()
        self._remember = remember

    def subscribe(self, listener: Listener[T], *, everywhere: bool = False) -> Callable[[], None]:
        """Add `listener` (called on any thread); returns the function that removes it."""
        group = self._everywhere if everywhere else self._local
        with self._lock:
            group.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in group:
                    group.remove(listener)

        return unsubscribe

    def any(self) -> bool:
        with self._lock:
            return bool(self._local or self._everywhere)

    def want_elsewhere(self) -> bool:
        with self._lock:
            return bool(self._everywhere)

    def changed_here(self, key: Hashable, version: str | None, item: T) -> None:
        """This process changed `key`: everyone hears it."""
        with self._lock:
            if version is not None:
                self._note(key, version)
            listeners = self._local + self._everywhere
        for listener in listeners:
            listener(item)

    def changed_elsewhere(self, key: Hashable, version: str, load: Callable[[], T | None]) -> None:
        """A version of `key` seen in the database: `everywhere` listeners hear it
        unless it was already heard (made here, or seen by an earlier look)."""
        with self._lock:
            if not self._everywhere or self._heard.get(key) == version:
                return
            self._note(key, version)
            listeners = list(self._everywhere)
        item = load()
        if item is None:
            return
        for listener in listeners:
            listener(item)

    def _note(self, key: Hashable, version: str) -> None:
        self._heard[key] = version
        self._heard.move_to_end(key)
        while len(self._heard) > self._remember:
            self._heard.popitem(last=False)
