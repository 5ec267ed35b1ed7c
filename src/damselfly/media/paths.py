"""Input and output locations: only under configured roots, never by traversal."""

from __future__ import annotations

import os
from pathlib import Path

from damselfly.errors import InvalidInput


def _inside(path: Path, roots: tuple[Path, ...]) -> Path | None:
    resolved = Path(os.path.realpath(path))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if resolved == real_root or real_root in resolved.parents:
            return resolved
    return None


def under_roots(raw: str, roots: tuple[Path, ...], what: str, *, bucket: bool = False) -> Path:
    """Where `raw` points (symlinks and `..` followed), if that is under one of `roots`.

    A full path under a root is taken as is; a relative one is read from the first
    root. With `bucket`, so is any other full path, as a storage service reads `/dir/`
    relative to its bucket (output directories).
    """
    if not roots:
        raise InvalidInput(f"no {what} roots are configured; start the server with some")
    if not isinstance(raw, str) or not raw or "\0" in raw or len(raw) > 4096:
        raise InvalidInput(f"{what} must be a path")
    absolute = Path(raw).is_absolute()
    found = _inside(Path(raw), roots) if absolute else None
    if found is None and (bucket or not absolute):
        found = _inside(roots[0] / raw.lstrip("/"), roots)
    if found is None:
        shown = ", ".join(str(r) for r in roots)
        raise InvalidInput(f"{what} {raw!r} is outside the configured roots ({shown})")
    return found
