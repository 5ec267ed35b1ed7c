"""Which file system holds a path, read from /proc/self/mountinfo (Linux).

The store pre-allocates content files where that is cheap, so a full disk shows
before the first byte is fetched and the file is laid out in few extents. On file
systems with unwritten extents `fallocate` of 1 GiB took 3 ms here (ext4), and a
single writer's 16 KiB writes into it were 12% faster (in a whole `get`, with the
write lock shared by the workers, no difference showed). On tmpfs it allocates every
page up front (0.24 s per GiB), and where the kernel has no `fallocate` glibc writes
zeros instead, so those keep sparse files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PREALLOCATING = frozenset({"ext4", "xfs", "btrfs", "f2fs"})
_ESCAPE = re.compile(r"\\([0-7]{3})")  # mountinfo writes space, tab, \n and \ as \ooo


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def fs_type(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The type of the file system `path` is on ("ext4", "tmpfs", ...), None if unknown."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, found = -1, None
    for line in lines:
        fields = line.split(" ")
        try:
            mount_point = _unescape(fields[4])
            kind = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best:  # later mounts on the same point hide earlier
            best, found = len(mount_point), kind
    return found


def preallocates_cheaply(path: Path) -> bool:
    return fs_type(path) in PREALLOCATING
