"""Outputs appear whole or not at all: written under a hidden directory beside their
final place, renamed in on success (playlists last), removed on failure."""

from __future__ import annotations

import mimetypes
import os
import shutil
from pathlib import Path
from typing import Any

STAGING_PREFIX = ".damselfly-staging-"
_LAST = (".m3u8", ".vtt")  # indexes that name the other files: they appear last


class Staging:
    def __init__(self, final_dir: Path, key: str) -> None:
        self.final_dir = final_dir
        self.dir = final_dir / f"{STAGING_PREFIX}{key}"

    def __enter__(self) -> Staging:
        self.discard()
        self.dir.mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def path(self, name: str) -> Path:
        return self.dir / name

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, describe: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Move every staged file into place; what the subtask's outputs list shows."""
        describe = describe or {}
        files = sorted(self.dir.iterdir(), key=lambda p: (p.suffix in _LAST, p.name))
        outputs = []
        for staged in files:
            final = self.final_dir / staged.name
            size = staged.stat().st_size
            os.replace(staged, final)
            mime = mimetypes.guess_type(final.name)[0] or "application/octet-stream"
            if final.suffix == ".m3u8":
                mime = "application/vnd.apple.mpegurl"
            elif final.suffix == ".ts":
                mime = "video/mp2t"
            outputs.append(
                {
                    "path": str(final),
                    "name": final.name,
                    "size": size,
                    "mime_type": mime,
                    **describe.get(staged.name, {}),
                }
            )
        # the index files go last; list them first, as the subtask's main output
        return sorted(outputs, key=lambda o: Path(o["name"]).suffix not in _LAST[:1])


def sweep(output_dir: Path) -> int:
    """Remove staging directories a killed worker left behind; how many."""
    removed = 0
    if output_dir.is_dir():
        for entry in output_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
