from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import OriginProcess, start_origin, stop


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProcess]:
    """One real HTTP origin process for the session; tests use their own file names."""
    root = tmp_path_factory.mktemp("origin")
    server = start_origin(root)
    yield server
    stop(server.process)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
