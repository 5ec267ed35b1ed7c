"""The local API (unix socket) `damselfly get` talks to.

`POST /api/v1/downloads` answers with a stream of JSON lines: progress every
0.2 s, then one `result` or `error` line. The download itself belongs to the
daemon: if the `get` goes away, it still finishes, and the next `get` of the task
is a cache hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from damselfly.errors import DamselflyError
from damselfly.peer.request import request_from_json, result_to_json
from damselfly.peer.upload import DAEMON, add_task_routes
from damselfly.web import json_errors, read_json

if TYPE_CHECKING:
    from damselfly.peer.daemon import Daemon, Inflight

_PROGRESS_EVERY = 0.2


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode() + b"\n"


def error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, DamselflyError):
        return {
            "code": exc.code,
            "message": str(exc),
            "exit_code": exc.exit_code,
            "details": exc.details(),
        }
    return {
        "code": "InternalError",
        "message": f"the peer daemon failed: {type(exc).__name__}: {exc}",
        "exit_code": 1,
        "details": [],
    }


async def download(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    wanted = request_from_json(await read_json(request))
    entry = daemon.download(wanted)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    # the get may go away (Ctrl-C, its own timeout); the download goes on without it
    with contextlib.suppress(ConnectionResetError):
        await _stream(response, entry)
    return response


async def _stream(response: web.StreamResponse, entry: Inflight) -> None:
    progress = entry.progress
    while not entry.future.done():
        with progress.lock:
            line = {
                "progress": {
                    "total": progress.total,
                    "done": progress.done,
                    "reused": progress.reused,
                    "source_bytes": progress.source_bytes,
                    "peer_bytes": progress.peer_bytes,
                }
            }
        await response.write(_line(line))
        await asyncio.wait({entry.future}, timeout=_PROGRESS_EVERY)
    if entry.future.cancelled():
        await response.write(
            _line({"error": error_payload(DamselflyError("the peer daemon is shutting down"))})
        )
    elif entry.future.exception() is not None:
        await response.write(_line({"error": error_payload(entry.future.exception())}))
    else:
        await response.write(_line({"result": result_to_json(entry.future.result())}))
    await response.write_eof()


def build_local_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[DAEMON] = daemon
    app.router.add_post("/api/v1/downloads", download)
    add_task_routes(app)
    return app
