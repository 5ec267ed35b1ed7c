from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A scheduler and peers on 127.0.0.1, started by the test, stopped after it."""
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.close()
    # a server error swallowed by a retry is still a bug
    assert not c.tracebacks(), c.tracebacks()
