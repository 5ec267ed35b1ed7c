"""`damselfly get`: download a URL through the peer cache (dfget's behaviour)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer

from damselfly import digest as digests
from damselfly.cli.options import default_data_dir, filters_or_default, parse_headers
from damselfly.cli.progress import ProgressBar
from damselfly.errors import Interrupted, InvalidInput
from damselfly.peer.daemon_client import DaemonClient, DaemonUnavailable
from damselfly.peer.output import check_output, place_output
from damselfly.peer.request import DownloadRequest, DownloadResult, Progress, check_url
from damselfly.pieces import check_piece_length
from damselfly.settings import PeerSettings, default_endpoint
from damselfly.units import parse_duration, parse_size

HELP = """Download URL to -O OUTPUT through the local cache.

Pieces are fetched in parallel and kept in the data directory; a second get of the same task is served from there without asking the origin. An interrupted download resumes from its finished pieces.

Examples:

  damselfly get https://example.com/big.iso -O /tmp/big.iso

  damselfly get https://example.com/a.tar -O a.tar --digest sha256:HEX -H 'Authorization: Bearer x'
"""  # noqa: E501


def build_request(
    url: str,
    *,
    tag: str,
    application: str,
    piece_length: str | None,
    filtered_query_param: list[str] | None,
    content: str | None,
    header: list[str] | None,
    timeout: str | None,
    disable_back_to_source: bool,
) -> DownloadRequest:
    check_url(url)
    length = check_piece_length(parse_size(piece_length)) if piece_length is not None else None
    return DownloadRequest(
        url=url,
        tag=tag,
        application=application,
        piece_length=length,
        filtered_query_params=filters_or_default(filtered_query_param),
        content_for_calculating_task_id=content,
        headers=parse_headers(header),
        timeout=parse_duration(timeout) if timeout else None,
        disable_back_to_source=disable_back_to_source,
    )


Download = Callable[[Progress], Awaitable[DownloadResult]]


async def _run(download: Download, show: bool) -> DownloadResult:
    progress = Progress()
    bar = ProgressBar(progress) if show else None
    drawing = asyncio.create_task(bar.run()) if bar else None
    succeeded = False
    try:
        result = await download(progress)
        succeeded = True
        return result
    finally:
        if drawing:
            drawing.cancel()
        if bar:
            bar.finish(succeeded=succeeded)


def _through_daemon(client: DaemonClient, request: DownloadRequest) -> Download:
    async def download(progress: Progress) -> DownloadResult:
        def on_progress(line: dict[str, Any]) -> None:
            with progress.lock:
                progress.total, progress.done = line["total"], line["done"]
                progress.reused = line["reused"]

        # a daemon thread: Ctrl-C must not wait for the daemon's download to end
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DownloadResult] = loop.create_future()

        def work() -> None:
            try:
                result = client.download(request, on_progress)
            except BaseException as exc:  # handed to the event loop as the outcome
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        threading.Thread(target=work, name="damselfly-get", daemon=True).start()
        return await future

    return download


def _settle(
    future: asyncio.Future[DownloadResult],
    result: DownloadResult | None,
    exc: BaseException | None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def get(
    url: str = typer.Argument(..., help="The http(s) URL to download."),
    output: Path = typer.Option(..., "-O", "--output", help="Where to write the file."),
    tag: str = typer.Option("", "--tag", help="Tag that tells tasks of one URL apart."),
    application: str = typer.Option("", "--application", help="Caller application."),
    piece_length: str | None = typer.Option(
        None, "--piece-length", help="Piece length (bytes or e.g. 8MiB; at least 4MiB)."
    ),
    filtered_query_param: list[str] | None = typer.Option(
        None,
        "--filtered-query-param",
        help="Query key left out of the task ID; repeatable; replaces the default list.",
    ),
    content: str | None = typer.Option(
        None, "--content-for-calculating-task-id", help="Compute the task ID from this instead."
    ),
    digest: str | None = typer.Option(
        None, "--digest", help="Verify the result: sha256:<hex>, sha512:<hex> or crc32:<hex>."
    ),
    header: list[str] | None = typer.Option(
        None, "-H", "--header", help="Request header 'Name: value'; repeatable."
    ),
    timeout: str | None = typer.Option(None, "--timeout", help="Give up after e.g. 30s, 5m."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Do not show progress."),
    disable_back_to_source: bool = typer.Option(
        False, "--disable-back-to-source", help="Fail instead of fetching from the origin."
    ),
    data_dir: Path = typer.Option(
        None,
        "--data-dir",
        help="Cache directory (default: $DAMSELFLY_DATA_DIR or ~/.local/share/damselfly).",
    ),
    hostname: str | None = typer.Option(None, "--hostname", help="Host name for peer IDs."),
    concurrency: int = typer.Option(
        8,
        "--concurrency",
        min=1,
        max=64,
        help="Most pieces fetched at once; starts at 2 and doubles while that is faster.",
    ),
    ca_cert: Path | None = typer.Option(None, "--ca-cert", help="CA bundle for HTTPS origins."),
    endpoint: Path | None = typer.Option(
        None,
        "--endpoint",
        help="Peer daemon socket (default <data-dir>/peer.sock). When a daemon answers "
        "there, it downloads (P2P); otherwise get works alone.",
    ),
) -> None:
    request = build_request(
        url,
        tag=tag,
        application=application,
        piece_length=piece_length,
        filtered_query_param=filtered_query_param,
        content=content,
        header=header,
        timeout=timeout,
        disable_back_to_source=disable_back_to_source,
    )
    expected = digests.parse(digest) if digest else None
    output = check_output(output, overwrite=overwrite)
    if ca_cert is not None and not ca_cert.is_file():
        raise InvalidInput(f"CA bundle {ca_cert} does not exist")

    data_dir = data_dir or default_data_dir()
    client = DaemonClient(endpoint or default_endpoint(data_dir))
    try:
        if client.available():
            result = asyncio.run(_run(_through_daemon(client, request), show=not no_progress))
        elif endpoint is not None:
            raise DaemonUnavailable(
                f"no peer daemon answers at {endpoint}; start `damselfly peer` there or "
                "drop --endpoint to download without one"
            )
        else:
            result = _alone(request, data_dir, hostname, concurrency, ca_cert, not no_progress)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; finished pieces of {url} are kept and the same command resumes"
        ) from None
    if expected is not None:
        digests.verify(result.content_path, expected, what=f"{url} (task {result.task_id})")
    place_output(result.content_path, output)


def _alone(
    request: DownloadRequest,
    data_dir: Path,
    hostname: str | None,
    concurrency: int,
    ca_cert: Path | None,
    show: bool,
) -> DownloadResult:
    """A transient in-process peer: the store and the origin, no scheduler."""
    # imported here: a get through the daemon never needs the engine
    from damselfly.logs import EventLog
    from damselfly.peer.download import Downloader
    from damselfly.storage import Store
    from damselfly.storage.gc import collect

    overrides = {"hostname": hostname} if hostname else {}
    settings = PeerSettings(
        data_dir=data_dir, concurrency=concurrency, ca_cert=ca_cert, **overrides
    )
    store = Store(settings.data_dir)
    log = EventLog(settings.log_dir, "peer")
    try:
        downloader = Downloader(store, settings, log)
        collect(store, downloader.gc_policy)
        return asyncio.run(_run(lambda progress: downloader.download(request, progress), show))
    finally:
        log.close()
        store.close()
