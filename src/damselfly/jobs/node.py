"""A process's place among job runners: host, data dir, role and a slot number.

A restarted process must know which half-run jobs were its own (to take them back
at once, without waiting for their leases to run out), while another live process on
the same host must never be mistaken for a dead predecessor. Each process holds an
exclusive lock on one slot file; the first free slot is its place.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class Node:
    name: str
    lock: IO[bytes] | None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing drops the lock
            self.lock = None


def claim_node(data_dir: Path, role: str, *, slots: int = 64) -> Node:
    """The first free slot of `role` in `data_dir`, held until `release` or exit."""
    where = data_dir / "run"
    where.mkdir(parents=True, exist_ok=True)
    for slot in range(1, slots + 1):
        handle = open(where / f"{role}-{slot}.lock", "ab")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        os.set_inheritable(handle.fileno(), False)
        return Node(f"{socket.gethostname()}:{data_dir.resolve()}:{role}-{slot}", handle)
    # every slot taken: run without a place (jobs are taken back after their lease)
    return Node(f"{socket.gethostname()}:{os.getpid()}:{role}", None)
