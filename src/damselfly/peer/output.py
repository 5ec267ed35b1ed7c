"""Putting finished content at the user's output path, never half-written."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from damselfly.errors import InvalidInput


def check_output(output: Path, *, overwrite: bool) -> Path:
    """Refuse outputs we could not write before any byte is fetched."""
    output = output.expanduser().absolute()
    if not output.parent.is_dir():
        raise InvalidInput(
            f"output directory {output.parent} does not exist; create it or choose another -O"
        )
    if output.is_dir():
        raise InvalidInput(f"output {output} is a directory; give a file path to -O")
    if output.exists() and not overwrite:
        raise InvalidInput(f"output {output} already exists; pass --overwrite to replace it")
    return output


def place_output(content: Path, output: Path) -> str:
    """Hard-link (or copy, across file systems) `content` to `output` atomically.

    Returns "hardlink" or "copy". The temporary name sits beside the output so the
    final rename cannot cross a file system.
    """
    temp = output.with_name(f".{output.name}.damselfly-{uuid.uuid4().hex[:8]}")
    try:
        try:
            os.link(content, temp)
            how = "hardlink"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
            shutil.copyfile(content, temp)
            how = "copy"
        os.replace(temp, output)
        return how
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
