"""The input file of a task: a path as is, or a URL fetched through the peer cache.

A URL goes through the local peer daemon when one answers (so a thousand workers read
the origin once, P2P); otherwise through an in-process downloader over the same store
format, like `damselfly get` without a daemon.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from damselfly.errors import DamselflyError, RemoteError, SourceError
from damselfly.media.states import ErrorCode
from damselfly.media.work.control import MediaFailure
from damselfly.peer.daemon_client import DaemonClient
from damselfly.peer.request import DownloadRequest, DownloadResult
from damselfly.settings import MediaSettings, PeerSettings


def _alone(request: DownloadRequest, cache_dir: Path) -> DownloadResult:
    from damselfly.logs import EventLog
    from damselfly.peer.download import Downloader
    from damselfly.storage import Store

    settings = PeerSettings(data_dir=cache_dir)
    store = Store(settings.data_dir)
    log = EventLog(settings.log_dir, "media-input")
    try:
        return asyncio.run(Downloader(store, settings, log).download(request))
    finally:
        log.close()
        store.close()


def local_input(source: dict[str, Any], settings: MediaSettings) -> Path:
    """Where the task's input is on this machine; MediaFailure when it cannot be had."""
    if source["kind"] in ("path", "upload"):
        path = Path(source["path"])
        if not path.is_file():
            raise MediaFailure(
                ErrorCode.NOT_ACCESSIBLE, f"the input file {path} is gone; create the task again"
            )
        return path
    request = DownloadRequest(url=source["url"], timeout=3600)
    try:
        endpoint = settings.peer_endpoint
        client = DaemonClient(endpoint) if endpoint is not None else None
        if client is not None and client.available():
            result = client.download(request, lambda _: None)
        else:
            result = _alone(request, settings.cache_dir)
    except (SourceError, RemoteError, DamselflyError) as exc:
        raise MediaFailure(
            ErrorCode.NOT_ACCESSIBLE, f"the input {source['url']} could not be fetched: {exc}"
        ) from None
    return result.content_path
