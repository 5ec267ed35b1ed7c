"""Putting this VM in the same state before every timed run."""

from __future__ import annotations

import os
from pathlib import Path


def prewarm_memory(nbytes: int) -> None:
    """Touch and free `nbytes` of memory and flush earlier writes.

    The host takes freed guest memory back; the first touch of such a page costs a
    fault on the host, and writing 1 GiB to tmpfs swung 0.4-2.7 s here. Touching the
    memory first gives every tool the same, host-backed start.
    """
    # sync first: it can take seconds, long enough for the host to take back what
    # was just touched
    os.sync()
    block = b"\1" * (64 << 20)
    held = [bytes(block) for _ in range(max(1, nbytes // len(block)))]
    del held
    # no pause after: the host reclaims freed memory within a second or two


def drop_page_cache(keep: Path | None = None) -> bool:
    """Write back and drop the page cache (root only), then read `keep` back in.

    Each timed run leaves a GiB of cached output behind; on this VM the next writer
    then paid 2-3x for its page-cache pages, whichever tool it was. Dropping gives
    every run the same start. Returns False where the kernel refuses (not root).
    """
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
    except OSError:
        return False
    if keep is not None:
        with keep.open("rb") as f:
            while f.read(8 << 20):
                pass
    return True
