"""Task cache pages: search (four modes), delete, executions and their detail, preheat."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from damselfly.console.render import make_templates
from damselfly.console.session import Editor, Viewer
from damselfly.errors import DamselflyError, InvalidInput
from damselfly.jobs.models import Job
from damselfly.manager.api.deps import DB, ManagerContext, context
from damselfly.manager.secrets import masked
from damselfly.manager.task_jobs import task_id_from_args

router = APIRouter(prefix="/console")
templates = make_templates()
Ctx = Annotated[ManagerContext, Depends(context)]
PER_PAGE = 10
ROWS_PER_CARD = 5
MODES = ("url", "image", "task_id", "content")


def _page(request: Request, name: str, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, values)


def search_args(form: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(job type, job args) from the search form, checked as the upstream console does."""
    mode = form.get("mode", "url")
    if mode not in MODES:
        raise InvalidInput(f"unknown search mode {mode!r}")
    if mode == "task_id":
        return "get_task", {"task_id": form.get("task_id", "").strip()}
    if mode == "content":
        content = form.get("content", "")
        if not content:
            raise InvalidInput("content for calculating the task ID is required")
        return "get_task", {"content_for_calculating_task_id": content}
    url = form.get("url", "").strip()
    if not url:
        raise InvalidInput("a URL is required")
    if len(url) > 1000:
        raise InvalidInput("the URL must be at most 1000 characters")
    if mode == "image":
        args: dict[str, Any] = {"url": url}
        for key in ("platform", "username", "password"):
            if form.get(key):
                args[key] = form[key].strip() if key != "password" else form[key]
        return "get_image_distribution", args
    if not url.startswith(("http://", "https://", "ftp://")):
        raise InvalidInput("the URL must start with http://, https:// or ftp://")
    args = {"url": url}
    for key in ("tag", "application"):
        value = form.get(key, "").strip()
        if len(value) > 400:
            raise InvalidInput(f"{key} must be at most 400 characters")
        if value:
            args[key] = value
    piece = form.get("piece_length", "").strip()
    if piece:
        if not piece.isdigit() or not 4 <= int(piece) <= 64:
            raise InvalidInput("piece length is a whole number of MiB within 4-64")
        args["piece_length"] = int(piece) << 20
    filters = [f for f in form.get("filters", "").replace(",", " ").split() if f]
    if filters:
        args["filtered_query_params"] = "&".join(filters)
    return "get_task", args


def _submit(ctx: ManagerContext, user_id: int, type_: str, args: dict, clusters: list[int]) -> Job:
    ctx.validate(type_, args)
    return ctx.jobs.submit(type_, ctx.seal(args), user_id=user_id, cluster_ids=clusters)


@router.get("/tasks", response_class=HTMLResponse)
def search_page(request: Request, user: Viewer) -> HTMLResponse:
    return _page(request, "cache_search.html", user=user, mode="url", form={})


@router.post("/tasks/search", response_class=HTMLResponse)
async def search(request: Request, ctx: Ctx, user: Viewer) -> HTMLResponse:
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        type_, args = search_args(form)
        job = _submit(ctx, user.id, type_, args, [])
    except DamselflyError as exc:
        return _page(request, "cache_error.html", message=str(exc))
    return _page(request, "cache_results.html", job=_job_view(job), user=user, pages={})


@router.get("/jobs/{job_id}/results", response_class=HTMLResponse)
def results(request: Request, job_id: int, session: DB, user: Viewer) -> HTMLResponse:
    job = session.get(Job, job_id)
    if job is None:
        return _page(request, "cache_error.html", message=f"job {job_id} does not exist")
    pages = {int(k[5:]): max(1, int(v)) for k, v in request.query_params.items()
             if k.startswith("page_") and k[5:].isdigit() and v.isdigit()}  # fmt: skip
    return _page(request, "cache_results.html", job=_job_view(job), user=user, pages=pages,
                 rows=ROWS_PER_CARD)  # fmt: skip


@router.post("/tasks/delete")
async def delete(
    request: Request,
    ctx: Ctx,
    session: DB,
    user: Editor,
    search_job: Annotated[int, Form()],
    cluster: Annotated[int, Form()],
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """The DELETE of a result card: same task (or image), that cluster only."""
    if confirm != "DELETE":
        return _page(request, "cache_error.html", message="type DELETE to confirm")
    found = session.get(Job, search_job)
    if found is None:
        return _page(request, "cache_error.html", message=f"job {search_job} does not exist")
    args = ctx.unseal(dict(found.args))  # sealed again when the delete job is made
    if found.type == "get_image_distribution":
        args = {"image_manifest_url": args.pop("url"), **args}
    try:
        job = _submit(ctx, user.id, "delete_task", args, [cluster])
    except DamselflyError as exc:
        return _page(request, "cache_error.html", message=str(exc))
    return Response(status_code=204, headers={"HX-Redirect": f"/console/executions/{job.id}"})


def _job_view(job: Job) -> dict[str, Any]:
    args = masked(job.args)
    task_id = (job.result or {}).get("task_id") or args.get("task_id") or ""
    if not task_id:
        try:
            task_id = task_id_from_args(job.args) if job.type != "get_image_distribution" else ""
        except DamselflyError:
            task_id = ""
    failures: list[dict[str, Any]] = []
    for cluster in (job.result or {}).get("clusters", []):
        for entry in cluster.get("failure_tasks", []):
            failures.append({**entry, "cluster": cluster["scheduler_cluster_id"]})
    return {
        "id": job.id, "type": job.type, "state": job.state, "args": args, "result": job.result,
        "error_log": job.error_log, "task_id": task_id, "created_at": job.created_at,
        "finished_at": job.finished_at, "clusters": job.scheduler_cluster_ids,
        "progress": job.progress, "failures": failures,
    }  # fmt: skip


@router.get("/executions", response_class=HTMLResponse)
def executions(
    request: Request, session: DB, user: Viewer, state: str = "", page: int = 1
) -> HTMLResponse:
    """delete_task runs, newest first, 10 a page; the table part alone for htmx."""
    query = select(Job).where(Job.type == "delete_task")
    if state in ("PENDING", "SUCCESS", "FAILURE"):
        query = query.where(Job.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    last = max(1, -(-total // PER_PAGE))
    page = min(max(1, page), last)
    rows = session.scalars(query.order_by(Job.id.desc()).offset((page - 1) * PER_PAGE)
                           .limit(PER_PAGE)).all()  # fmt: skip
    name = "executions_table.html" if request.headers.get("HX-Request") else "executions.html"
    return _page(request, name, user=user, jobs=[_job_view(j) for j in rows], state=state,
                 page=page, last=last, total=total)  # fmt: skip


@router.get("/executions/{job_id}", response_class=HTMLResponse)
def execution(request: Request, job_id: int, session: DB, user: Viewer, page: int = 1):
    job = session.get(Job, job_id)
    if job is None:
        return _page(request, "cache_error.html", message=f"execution {job_id} does not exist")
    view = _job_view(job)
    last = max(1, -(-len(view["failures"]) // PER_PAGE))
    page = min(max(1, page), last)
    name = "execution_body.html" if request.headers.get("HX-Request") else "execution.html"
    return _page(request, name, user=user, job=view, page=page, last=last,
                 failures=view["failures"][(page - 1) * PER_PAGE : page * PER_PAGE])  # fmt: skip


@router.get("/preheat", response_class=HTMLResponse)
def preheat_page(request: Request, session: DB, user: Viewer, page: int = 1) -> HTMLResponse:
    query = select(Job).where(Job.type == "preheat")
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    last = max(1, -(-total // PER_PAGE))
    page = min(max(1, page), last)
    rows = session.scalars(query.order_by(Job.id.desc()).offset((page - 1) * PER_PAGE)
                           .limit(PER_PAGE)).all()  # fmt: skip
    name = "preheat_table.html" if request.headers.get("HX-Request") else "preheat.html"
    return _page(request, name, user=user, jobs=[_job_view(j) for j in rows], page=page,
                 last=last, error="")  # fmt: skip


@router.post("/preheat")
async def preheat(request: Request, ctx: Ctx, user: Editor) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    args: dict[str, Any] = {"type": form.get("type", "file"), "url": form.get("url", "").strip(),
                            "scope": form.get("scope", "single_seed_peer")}  # fmt: skip
    for key in ("platform", "username", "password", "tag", "application"):
        if form.get(key):
            args[key] = form[key]
    try:
        job = _submit(ctx, user.id, "preheat", args, [])
    except DamselflyError as exc:
        return _page(request, "cache_error.html", message=str(exc))
    return Response(status_code=204, headers={"HX-Redirect": f"/console/executions/{job.id}"})
