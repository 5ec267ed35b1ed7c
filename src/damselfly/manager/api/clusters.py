"""Scheduler clusters, and schedulers registering into them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from damselfly.database import utcnow as now
from damselfly.errors import Conflict
from damselfly.manager.api.deps import DB, Reader, Root
from damselfly.manager.models import Scheduler, SchedulerCluster

router = APIRouter(prefix="/api/v1", tags=["clusters"])


class ClusterIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    bio: str = Field(default="", max_length=1000)


class ClusterOut(BaseModel):
    id: int
    name: str
    bio: str
    created_at: datetime
    updated_at: datetime


class SchedulerIn(BaseModel):
    cluster_id: int
    hostname: str = Field(min_length=1, max_length=256)
    ip: str = Field(min_length=1, max_length=64)
    port: int = Field(ge=1, le=65535)


class SchedulerOut(BaseModel):
    id: int
    cluster_id: int
    hostname: str
    ip: str
    port: int
    state: str
    created_at: datetime
    last_seen: datetime


def _cluster_out(c: SchedulerCluster) -> ClusterOut:
    return ClusterOut(
        id=c.id, name=c.name, bio=c.bio, created_at=c.created_at, updated_at=c.updated_at
    )


def _scheduler_out(s: Scheduler) -> SchedulerOut:
    return SchedulerOut(
        id=s.id,
        cluster_id=s.cluster_id,
        hostname=s.hostname,
        ip=s.ip,
        port=s.port,
        state=s.state,
        created_at=s.created_at,
        last_seen=s.last_seen,
    )


@router.post("/scheduler-clusters", status_code=201)
def add_cluster(body: ClusterIn, session: DB, _: Root) -> ClusterOut:
    if session.scalar(select(SchedulerCluster).where(SchedulerCluster.name == body.name)):
        raise Conflict(f"scheduler cluster {body.name!r} already exists")
    stamp = now()
    cluster = SchedulerCluster(name=body.name, bio=body.bio, created_at=stamp, updated_at=stamp)
    session.add(cluster)
    session.flush()
    return _cluster_out(cluster)


@router.get("/scheduler-clusters")
def list_clusters(session: DB, _: Reader) -> list[ClusterOut]:
    return [_cluster_out(c) for c in session.scalars(select(SchedulerCluster).order_by("id"))]


@router.post("/schedulers")
def register_scheduler(body: SchedulerIn, session: DB, _: Root) -> SchedulerOut:
    """A scheduler joins (or re-joins) a cluster; called again, it refreshes last_seen."""
    if session.get(SchedulerCluster, body.cluster_id) is None:
        raise HTTPException(404, f"scheduler cluster {body.cluster_id} not found")
    existing = session.scalar(
        select(Scheduler).where(
            Scheduler.cluster_id == body.cluster_id,
            Scheduler.ip == body.ip,
            Scheduler.port == body.port,
        )
    )
    stamp = now()
    if existing is None:
        existing = Scheduler(
            cluster_id=body.cluster_id,
            hostname=body.hostname,
            ip=body.ip,
            port=body.port,
            state="active",
            created_at=stamp,
            last_seen=stamp,
        )
        session.add(existing)
    else:
        existing.hostname, existing.state, existing.last_seen = body.hostname, "active", stamp
    session.flush()
    return _scheduler_out(existing)


@router.get("/schedulers")
def list_schedulers(session: DB, _: Reader) -> list[SchedulerOut]:
    return [_scheduler_out(s) for s in session.scalars(select(Scheduler).order_by("id"))]
