"""/api/v1/media: templates, uploads, tasks and their outputs, events.

File routes (source playback, output view/download) also take `?access_token=`,
because a browser's <video> and <img> cannot send an Authorization header.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import secrets
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from damselfly.console.session import cookie_user
from damselfly.errors import InvalidInput, NotFound
from damselfly.manager.api.deps import (
    DB,
    ManagerContext,
    Reader,
    Root,
    RowId,
    context,
    current_user,
)
from damselfly.manager.models import User
from damselfly.media.service import MediaService
from damselfly.media.workflows import Workflows

router = APIRouter(prefix="/api/v1/media", tags=["media"])
Ctx = Annotated[ManagerContext, Depends(context)]
_bearer = HTTPBearer(auto_error=False)
_UPLOAD_LIMIT = 64 << 30


def media(ctx: Ctx) -> MediaService:
    if ctx.media is None:
        raise HTTPException(404, "media processing is not enabled on this manager")
    return ctx.media


Media = Annotated[MediaService, Depends(media)]


def file_reader(
    request: Request,
    session: DB,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[str | None, Query(description="for <video>/<img>")] = None,
) -> User:
    """A bearer token, `?access_token=`, or the console's session cookie (reads only)."""
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    if credentials is None:
        user = cookie_user(request, session)
        if user is not None:
            return user
    return current_user(session, credentials)


FileReader = Annotated[User, Depends(file_reader)]


@router.get("/templates")
def list_templates(svc: Media, _: Reader, kind: str | None = None) -> list[dict[str, Any]]:
    """Presets (immutable) and custom templates; `kind` filters."""
    return svc.templates(kind)


@router.post("/templates")
async def create_template(svc: Media, _: Root, request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(svc.save_template, await _json(request))


@router.put("/templates/{template_id}")
async def update_template(
    template_id: RowId, svc: Media, _: Root, request: Request
) -> dict[str, Any]:
    return await asyncio.to_thread(svc.save_template, await _json(request), template_id)


@router.delete("/templates/{template_id}", status_code=204)
def delete_template(template_id: RowId, svc: Media, _: Root) -> Response:
    svc.delete_template(template_id)
    return Response(status_code=204)


@router.put("/uploads")
async def upload(svc: Media, _: Root, request: Request, name: str = Query(max_length=200)):
    """The request body is the file; its upload ID goes into a task's input."""
    clean = Path(name).name
    if not clean or clean.startswith("."):
        raise InvalidInput("name must be a plain file name")
    upload_id = secrets.token_hex(12)
    folder = svc.settings.uploads / upload_id
    folder.mkdir(parents=True)
    size = await _receive(request, folder / f".{clean}.part", folder / clean)
    return {"upload_id": upload_id, "name": clean, "size": size}


@router.post("/tasks")
async def create_task(svc: Media, _: Root, request: Request) -> dict[str, Any]:
    body = await _json(request)
    return await asyncio.to_thread(svc.create, body)


@router.get("/tasks")
def list_tasks(
    svc: Media,
    _: Reader,
    response: Response,
    status: str | None = None,
    task_id: str | None = None,
    failed: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Newest first; `failed` = has a failed subtask; `since`/`until` on created_at."""
    tasks, total = svc.list(
        status=status,
        task_id=task_id,
        failed=failed,
        since=since,
        until=until,
        page=page,
        per_page=per_page,
    )
    response.headers["X-Total-Count"] = str(total)
    return {"tasks": tasks, "total": total, "page": page, "per_page": per_page}


@router.get("/events", response_class=StreamingResponse)
async def events(svc: Media, _: Reader, request: Request) -> StreamingResponse:
    """Server-sent events: one `task` event (the task detail as JSON) per change."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

    def on_change(view: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(_offer, queue, json.dumps(view))

    unsubscribe = svc.subscribe(on_change, everywhere=True)

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: task\ndata: {payload}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _offer(queue: asyncio.Queue[str], payload: str) -> None:
    if not queue.full():
        queue.put_nowait(payload)


@router.get("/tasks/{task_id}")
def get_task(task_id: str, svc: Media, _: Reader) -> dict[str, Any]:
    return svc.get(task_id)


@router.post("/tasks/{task_id}/restart")
def restart_task(task_id: str, svc: Media, _: Root) -> dict[str, Any]:
    """FINISH tasks only: every subtask runs again with the parameters frozen at creation."""
    return svc.restart(task_id)


@router.post("/tasks/{task_id}/abort")
def abort_task(task_id: str, svc: Media, _: Root) -> dict[str, Any]:
    """WAITING tasks only (409 otherwise): dequeued for good."""
    return svc.abort(task_id)


@router.get("/tasks/{task_id}/source")
def play_source(task_id: str, svc: Media, _: FileReader) -> FileResponse:
    """The input file, with HTTP Range support so a <video> can seek."""
    task = svc.get(task_id)
    source = task["input"]
    path = svc.cached_input(task_id) if source["kind"] == "url" else Path(source["path"])
    if path is None or not path.is_file():
        raise NotFound(
            f"the input of {task_id} is not on this server (yet); it is fetched when the task runs"
        )
    return FileResponse(
        path,
        media_type=mimetypes.guess_type(source["name"])[0] or "video/mp4",
        content_disposition_type="inline",
    )


def _outputs(svc: MediaService, task_id: str, seq: int) -> list[dict[str, Any]]:
    task = svc.get(task_id)
    for sub in task["subtasks"]:
        if sub["seq"] == seq:
            if not sub["outputs"]:
                raise NotFound(f"subtask {seq} of {task_id} has no output files ({sub['status']})")
            return sub["outputs"]
    raise NotFound(f"{task_id} has no subtask {seq}")


@router.get("/tasks/{task_id}/subtasks/{seq}/outputs/{index}")
def output_file(
    task_id: str, seq: int, index: int, svc: Media, _: FileReader, download: bool = False
) -> FileResponse:
    """One output file (0 is the subtask's main one), inline, or as a download."""
    outputs = _outputs(svc, task_id, seq)
    if not 0 <= index < len(outputs):
        raise NotFound(f"subtask {seq} of {task_id} has {len(outputs)} files; no file {index}")
    entry = outputs[index]
    path = Path(entry["path"])
    if not path.is_file():
        raise NotFound(f"{entry['name']} was removed from {path.parent}")
    return FileResponse(
        path,
        media_type=entry["mime_type"],
        filename=entry["name"],
        content_disposition_type="attachment" if download else "inline",
    )


@router.get("/tasks/{task_id}/subtasks/{seq}/archive")
def output_archive(task_id: str, seq: int, svc: Media, _: FileReader) -> StreamingResponse:
    """Every output file of a subtask in one zip, streamed as it is built."""
    outputs = _outputs(svc, task_id, seq)
    files = [Path(o["path"]) for o in outputs if Path(o["path"]).is_file()]

    def build() -> Iterator[bytes]:
        sink = _ChunkSink()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, path.name)
                yield from sink.take()
        yield from sink.take()

    name = f"{task_id}-{seq}.zip"
    return StreamingResponse(
        build(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class _ChunkSink:
    """A write-only file object for zipfile whose bytes are taken as they come."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        chunks, self._chunks = self._chunks, []
        yield from chunks


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the request body must be JSON") from None


def workflows(ctx: Ctx) -> Workflows:
    if ctx.workflows is None:
        raise HTTPException(404, "media processing is not enabled on this manager")
    return ctx.workflows


Flows = Annotated[Workflows, Depends(workflows)]


@router.post("/workflows")
async def create_workflow(flows: Flows, _: Root, request: Request) -> dict[str, Any]:
    """{name, watch_dir (under an input root), request (subtasks, output_dir…)}."""
    return await asyncio.to_thread(flows.create, await _json(request))


@router.get("/workflows")
def list_workflows(flows: Flows, _: Reader) -> list[dict[str, Any]]:
    return flows.list()


@router.post("/workflows/{workflow_id}/enable")
def enable_workflow(workflow_id: RowId, flows: Flows, _: Root) -> dict[str, Any]:
    return flows.set_enabled(workflow_id, True)


@router.post("/workflows/{workflow_id}/disable")
def disable_workflow(workflow_id: RowId, flows: Flows, _: Root) -> dict[str, Any]:
    return flows.set_enabled(workflow_id, False)


@router.delete("/workflows/{workflow_id}", status_code=204)
def delete_workflow(workflow_id: RowId, flows: Flows, _: Root) -> Response:
    flows.delete(workflow_id)
    return Response(status_code=204)


@router.put("/workflows/{workflow_id}/uploads")
async def upload_to_workflow(
    workflow_id: RowId, flows: Flows, _: Root, request: Request, name: str = Query(max_length=200)
) -> dict[str, Any]:
    """The body is a file; it lands in the workflow's directory, which makes it a task."""
    folder = await asyncio.to_thread(flows.watch_dir, workflow_id)
    clean = Path(name).name
    if not clean or clean.startswith("."):
        raise InvalidInput("name must be a plain file name")
    size = await _receive(request, folder / f".{clean}.part", folder / clean)
    return {"workflow_id": workflow_id, "name": clean, "size": size}


async def _receive(request: Request, partial: Path, final: Path) -> int:
    """Stream the body to `partial`, rename it to `final` when whole; its size."""
    size = 0
    try:
        with partial.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > _UPLOAD_LIMIT:
                    raise InvalidInput("uploads are limited to 64 GiB")
                await asyncio.to_thread(out.write, chunk)
        partial.rename(final)  # an interrupted upload never looks whole
    finally:
        partial.unlink(missing_ok=True)
    return size
