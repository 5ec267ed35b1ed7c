"""/api/v1/jobs: Dragonfly's job API over the durable engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from damselfly.errors import Conflict
from damselfly.jobs.models import Job
from damselfly.manager.api.deps import DB, ManagerContext, Reader, Root, RowId, context
from damselfly.manager.secrets import masked

router = APIRouter(prefix="/api/v1", tags=["jobs"])
Ctx = Annotated[ManagerContext, Depends(context)]


class JobIn(BaseModel):
    type: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    bio: str = Field(default="", max_length=1000)
    user_id: int | None = None
    scheduler_cluster_ids: list[int] = Field(default_factory=list)


class JobOut(BaseModel):
    id: int
    type: str
    state: str
    bio: str
    args: dict[str, Any]
    result: dict[str, Any] | None
    error_log: str
    user_id: int | None
    scheduler_cluster_ids: list[int]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: int
    attempts: int


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        type=job.type,
        state=job.state,
        bio=job.bio,
        args=masked(job.args),
        result=job.result,
        error_log=job.error_log,
        user_id=job.user_id,
        scheduler_cluster_ids=job.scheduler_cluster_ids,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=job.progress,
        attempts=job.attempts,
    )


@router.post("/jobs")
def create_job(body: JobIn, ctx: Ctx, user: Root) -> JobOut:
    if body.type not in ctx.jobs.types:
        known = ", ".join(sorted(ctx.jobs.types))
        raise HTTPException(422, f"unknown job type {body.type!r}; known: {known}")
    ctx.validate(body.type, body.args)
    job = ctx.jobs.submit(
        body.type,
        ctx.seal(body.args),
        user_id=user.id,
        cluster_ids=body.scheduler_cluster_ids,
        bio=body.bio,
    )
    return job_out(job)


@router.get("/jobs")
def list_jobs(
    request: Request,
    response: Response,
    session: DB,
    _: Reader,
    type: str | None = None,
    state: str | None = Query(None, pattern="^(PENDING|SUCCESS|FAILURE)$"),
    page: int = Query(1, ge=1),
    per_page: int = Query(10, ge=1, le=1000),
) -> list[JobOut]:
    """Newest first; the `Link` header points at the next and previous pages."""
    query = select(Job)
    if type:
        query = query.where(Job.type == type)
    if state:
        query = query.where(Job.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    jobs = session.scalars(
        query.order_by(Job.id.desc()).offset((page - 1) * per_page).limit(per_page)
    )
    last = max(1, -(-total // per_page))
    links = []
    for rel, number in (("first", 1), ("prev", page - 1), ("next", page + 1), ("last", last)):
        if 1 <= number <= last:
            url = request.url.include_query_params(page=number, per_page=per_page)
            links.append(f'<{url}>; rel="{rel}"')
    response.headers["Link"] = ", ".join(links)
    response.headers["X-Total-Count"] = str(total)
    return [job_out(j) for j in jobs]


@router.get("/jobs/events", response_class=StreamingResponse)
async def job_events(ctx: Ctx, _: Reader, request: Request) -> StreamingResponse:
    """Server-sent events: one `job` event (the job record as JSON) per change."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

    def on_change(job: Job) -> None:  # on a worker thread
        payload = job_out(job).model_dump_json()
        loop.call_soon_threadsafe(_offer, queue, payload)

    unsubscribe = ctx.jobs.subscribe(on_change, everywhere=True)

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: job\ndata: {payload}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _offer(queue: asyncio.Queue[str], payload: str) -> None:
    if not queue.full():  # a client too slow for 1000 changes misses some, not the server
        queue.put_nowait(payload)


@router.get("/jobs/{job_id}")
def get_job(job_id: RowId, session: DB, _: Reader) -> JobOut:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    return job_out(job)


@router.delete("/jobs/{job_id}")
def delete_job(job_id: RowId, session: DB, ctx: Ctx, _: Root) -> Response:
    """A queued job is canceled; a finished one is deleted; a running one is refused."""
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    if job.state == "PENDING" and job.started_at is None:
        session.rollback()
        ctx.jobs.cancel(job_id)
        return Response(status_code=200)
    if job.state == "PENDING":
        raise Conflict(f"job {job_id} is running; wait for it to finish")
    session.delete(job)
    return Response(status_code=200)
