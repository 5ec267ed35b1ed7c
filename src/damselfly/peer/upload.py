"""The upload server (TCP): piece bytes and piece lists for other peers, and the
task API the scheduler and manager use (stat, delete, fetch-this for seeds).

Piece bytes are a plain ranged GET answered with aiohttp's FileResponse, which
hands the range to the kernel with sendfile; the child reads it with blocking
`readinto` on a worker thread (see `swarm`). Only finished pieces of known tasks
are served, and at most `upload_slots` at once: a busy peer answers 503 at once
so the child picks another parent rather than queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from damselfly.errors import InvalidInput
from damselfly.ids import check_task_id, task_id
from damselfly.peer.control import ControlGuard
from damselfly.peer.request import request_from_json
from damselfly.web import json_errors, read_json

if TYPE_CHECKING:
    from damselfly.peer.daemon import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
CONTROL: web.AppKey[ControlGuard] = web.AppKey("control")
_MAX_POLL_WAIT = 30.0


def _task_id(request: web.Request) -> str:
    value = request.match_info["task_id"]
    try:
        check_task_id(value)
    except InvalidInput:
        raise web.HTTPBadRequest(text=f"{value!r} is not a task ID (64 hex characters)") from None
    return value


async def download_piece(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    tid = _task_id(request)
    if request.match_info["prefix"] != tid[:3]:
        raise web.HTTPNotFound(text="no such piece path")
    listed = daemon.piece_list(tid)
    if listed is None or listed.content_length is None or not listed.piece_length:
        raise web.HTTPNotFound(text=f"task {tid} is not served by this peer")
    try:
        wanted = request.http_range
    except ValueError:
        raise web.HTTPBadRequest(text="malformed Range header") from None
    start = wanted.start or 0
    stop = listed.content_length if wanted.stop is None else min(wanted.stop, listed.content_length)
    if start < 0 or start >= stop:
        raise web.HTTPRequestRangeNotSatisfiable(text="the range is outside the task")
    first, last = start // listed.piece_length, (stop - 1) // listed.piece_length
    if any(n not in listed.pieces for n in range(first, last + 1)):
        raise web.HTTPNotFound(text=f"pieces {first}-{last} of task {tid} are not finished here")
    if daemon.uploading >= daemon.settings.upload_slots:
        raise web.HTTPServiceUnavailable(
            text="every upload slot is busy; try another parent", headers={"Retry-After": "1"}
        )
    daemon.uploading += 1  # a request waiting on the rate cap holds its slot too
    try:
        await daemon.upload_rate.take(stop - start)
    except BaseException:
        daemon.uploading -= 1
        raise
    return _PieceResponse(daemon, daemon.store.content_path(tid))


class _PieceResponse(web.FileResponse):
    """Sends the range with sendfile; frees the upload slot once sent (or failed)."""

    def __init__(self, daemon: Daemon, path: Path) -> None:
        super().__init__(path, chunk_size=1 << 20)
        self._daemon: Daemon | None = daemon

    async def prepare(self, request: web.BaseRequest):
        try:
            return await super().prepare(request)
        finally:
            if self._daemon is not None:
                self._daemon.uploading -= 1
                self._daemon = None


async def piece_list(request: web.Request) -> web.Response:
    """The finished pieces; with `since=N&epoch=E&wait=S`, hold the answer up to S
    seconds until there are more than N (a long poll, so children learn of pieces at
    once), then send those after the first N of order E (a delta)."""
    daemon = request.app[DAEMON]
    tid = _task_id(request)
    try:
        since = int(request.query.get("since", "-1"))
        wait = min(float(request.query.get("wait", "0")), _MAX_POLL_WAIT)
    except ValueError:
        raise web.HTTPBadRequest(text="since must be an integer and wait a number") from None
    epoch = request.query.get("epoch", "")
    active = daemon.active.get(tid)
    if active is not None and wait > 0:
        listed = active.pieces
        news = len(listed.pieces) > since or epoch != listed.epoch
        if not news and listed.state == "running":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(active.changed.wait(), wait)
        return web.json_response(listed.to_json(listed.delta_for(since, epoch)))
    listed = daemon.piece_list(tid)
    if listed is None:
        raise web.HTTPNotFound(text=f"task {tid} is not on this peer")
    return web.json_response(listed.to_json(listed.delta_for(since, epoch)))


async def stat_task(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON].stat(_task_id(request)))


def _check_control(request: web.Request) -> None:
    guard = request.app.get(CONTROL)
    if guard is None:  # the local API's unix socket: its file mode decides who calls
        return
    reason = guard.refusal(request.remote)
    if reason is not None:
        raise web.HTTPForbidden(
            text=f"task control refused: {reason}; only this peer's scheduler may fetch or "
            "delete tasks here (set control_from to allow others)"
        )


async def delete_task(request: web.Request) -> web.Response:
    _check_control(request)
    freed = await request.app[DAEMON].delete(_task_id(request))
    return web.json_response({"task_id": request.match_info["task_id"], "freed_bytes": freed})


async def fetch_task(request: web.Request) -> web.Response:
    """Start fetching a task (a scheduler telling a seed peer); 202 at once."""
    _check_control(request)
    download = request_from_json(await read_json(request))
    request.app[DAEMON].download(download)
    return web.json_response({"task_id": task_id(download.identity())}, status=202)


async def healthz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"ok": True, "host_id": daemon.host_id})


def add_task_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/tasks/{task_id}", stat_task)
    app.router.add_delete("/api/v1/tasks/{task_id}", delete_task)
    app.router.add_get("/healthz", healthz)


def build_upload_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[DAEMON] = daemon
    app[CONTROL] = ControlGuard(daemon.settings)
    app.router.add_get("/download/{prefix}/{task_id}", download_piece)
    app.router.add_get("/api/v1/tasks/{task_id}/pieces", piece_list)
    app.router.add_post("/api/v1/tasks", fetch_task)
    add_task_routes(app)
    return app
