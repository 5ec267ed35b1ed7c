"""Media task pages: the task list with search and filter, create, detail (play, view,
download), restart and terminate; templates and workflows; live events for both halves."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from damselfly.console.render import make_templates
from damselfly.console.session import Editor, Viewer
from damselfly.errors import DamselflyError, InvalidInput
from damselfly.jobs.models import Job
from damselfly.manager.api.deps import ManagerContext, context
from damselfly.media.service import MediaService

router = APIRouter(prefix="/console")
templates = make_templates()
Ctx = Annotated[ManagerContext, Depends(context)]
PER_PAGE = 10


def _media(ctx: ManagerContext) -> MediaService:
    if ctx.media is None:
        raise InvalidInput("media processing is not enabled on this manager")
    return ctx.media


def _page(request: Request, name: str, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, values)


@router.get("/media", response_class=HTMLResponse)
def media_list(
    request: Request, ctx: Ctx, user: Viewer, status: str = "", task_id: str = "", page: int = 1
) -> HTMLResponse:
    svc = _media(ctx)
    tasks, total = svc.list(status=status or None, task_id=task_id or None,
                            page=max(1, page), per_page=PER_PAGE)  # fmt: skip
    last = max(1, -(-total // PER_PAGE))
    values = dict(user=user, tasks=tasks, total=total, page=page, last=last, status=status,
                  task_id=task_id)  # fmt: skip
    if request.headers.get("HX-Request"):
        return _page(request, "media_table.html", **values)
    transcodes = svc.templates("transcode")
    return _page(request, "media_list.html", transcodes=transcodes, **values)


@router.get("/media/tasks/{task_id}", response_class=HTMLResponse)
def media_task(request: Request, task_id: str, ctx: Ctx, user: Viewer) -> HTMLResponse:
    try:
        task = _media(ctx).get(task_id)
    except DamselflyError as exc:
        return _page(request, "cache_error.html", message=str(exc))
    name = "media_task_body.html" if request.headers.get("HX-Request") else "media_task.html"
    return _page(request, name, user=user, task=task)


@router.get("/media/tasks/{task_id}/subtasks", response_class=HTMLResponse)
def media_subtasks(request: Request, task_id: str, ctx: Ctx, user: Viewer) -> HTMLResponse:
    """The expanded row of the task list."""
    return _page(request, "media_subtasks.html", user=user, task=_media(ctx).get(task_id))


def _request_from(form: dict[str, str]) -> dict[str, Any]:
    kind = form.get("input_kind", "url")
    value = form.get(f"input_{kind}", "").strip()
    if not value:
        raise InvalidInput(f"give the input {'file' if kind == 'upload' else kind}")
    request: dict[str, Any] = {"input": {kind: value}, "output_dir": form.get("output_dir") or "/"}
    template = form.get("template", "")
    if template:
        request["transcodes"] = [{"template_id": int(template)}]
    offsets = [o for o in form.get("snapshots", "").replace(",", " ").split() if o]
    if offsets:
        request["snapshots"] = [{"offsets": offsets}]
    if form.get("sprite"):
        request["image_sprites"] = [{}]
    if form.get("animated_start") or form.get("animated_end"):
        request["animated_images"] = [{"start": form.get("animated_start") or "0s",
                                       "end": form.get("animated_end") or "3s"}]  # fmt: skip
    if form.get("understanding"):
        request["content_understanding"] = True
    if form.get("review"):
        request["review"] = True
    priority = form.get("priority", "0").strip() or "0"
    if not priority.lstrip("-").isdigit():
        raise InvalidInput("priority is a whole number within -10..10")
    request["priority"] = int(priority)
    return request


@router.post("/media/tasks")
async def create(request: Request, ctx: Ctx, user: Editor) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        task = await asyncio.to_thread(_media(ctx).create, _request_from(form))
    except (DamselflyError, ValueError) as exc:
        return _page(request, "form_error.html", message=str(exc))
    return Response(status_code=204,
                    headers={"HX-Redirect": f"/console/media/tasks/{task['task_id']}"})  # fmt: skip


@router.put("/media/uploads")
async def upload(request: Request, ctx: Ctx, user: Editor, name: str = Query(max_length=200)):
    """The create form's file, sent by the page before the form itself."""
    from damselfly.manager.api.media import _receive

    svc = _media(ctx)
    clean = Path(name).name
    if not clean or clean.startswith("."):
        raise InvalidInput("name must be a plain file name")
    upload_id = secrets.token_hex(12)
    folder = svc.settings.uploads / upload_id
    folder.mkdir(parents=True)
    size = await _receive(request, folder / f".{clean}.part", folder / clean)
    return {"upload_id": upload_id, "name": clean, "size": size}


@router.post("/media/tasks/{task_id}/restart")
def restart(request: Request, task_id: str, ctx: Ctx, user: Editor) -> HTMLResponse:
    return _operate(request, user, lambda: _media(ctx).restart(task_id))


@router.post("/media/tasks/{task_id}/abort")
def abort(request: Request, task_id: str, ctx: Ctx, user: Editor) -> HTMLResponse:
    return _operate(request, user, lambda: _media(ctx).abort(task_id))


def _operate(request: Request, user: Any, action: Any) -> HTMLResponse:
    try:
        task = action()
    except DamselflyError as exc:
        return _page(request, "form_error.html", message=str(exc))
    return _page(request, "media_row.html", user=user, task=task)


@router.get("/media/templates", response_class=HTMLResponse)
def templates_page(request: Request, ctx: Ctx, user: Viewer) -> HTMLResponse:
    return _page(request, "media_templates.html", user=user, templates=_media(ctx).templates())


@router.get("/media/workflows", response_class=HTMLResponse)
def workflows_page(request: Request, ctx: Ctx, user: Viewer) -> HTMLResponse:
    flows = ctx.workflows.list() if ctx.workflows is not None else []
    return _page(request, "media_workflows.html", user=user, workflows=flows)


@router.get("/events/{kind}")
async def events(kind: str, request: Request, ctx: Ctx, user: Viewer) -> StreamingResponse:
    """`refresh` whenever a job (kind `jobs`) or a media task (kind `media`) changes;
    the page re-reads the parts that show it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)

    def offer(payload: str) -> None:
        if not queue.full():
            queue.put_nowait(payload)

    if kind == "media" and ctx.media is not None:
        unsubscribe = ctx.media.subscribe(
            lambda view: loop.call_soon_threadsafe(offer, json.dumps(
                {"task_id": view["task_id"], "status": view["status"]})),
            everywhere=True,
        )  # fmt: skip
    else:
        unsubscribe = ctx.jobs.subscribe(
            lambda job: loop.call_soon_threadsafe(offer, json.dumps(_job_event(job))),
            everywhere=True,
        )

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: refresh\ndata: {payload}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip


def _job_event(job: Job) -> dict[str, Any]:
    return {"id": job.id, "type": job.type, "state": job.state}
