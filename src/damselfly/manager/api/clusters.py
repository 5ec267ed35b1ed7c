"""Scheduler clusters, and schedulers registering into them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from damselfly.database import utcnow as now
from damselfly.errors import Conflict
from damselfly.manager.api.deps import DB, Reader, Root
from damselfly.manager.models import (
    Scheduler,
    SchedulerCluster,
    SchedulerClusterSeedPeers,
    SeedPeerCluster,
)

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


class SeedPeerClusterIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    bio: str = Field(default="", max_length=1000)
    scheduler_cluster_ids: list[int] = Field(default_factory=list)


class SeedPeerClusterOut(BaseModel):
    id: int
    name: str
    bio: str
    scheduler_cluster_ids: list[int]
    created_at: datetime
    updated_at: datetime


def _seed_cluster_out(session: Session, c: SeedPeerCluster) -> SeedPeerClusterOut:
    served = session.scalars(
        select(SchedulerClusterSeedPeers.scheduler_cluster_id).where(
            SchedulerClusterSeedPeers.seed_peer_cluster_id == c.id
        )
    )
    return SeedPeerClusterOut(
        id=c.id,
        name=c.name,
        bio=c.bio,
        scheduler_cluster_ids=sorted(served),
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


@router.post("/seed-peer-clusters", status_code=201)
def add_seed_peer_cluster(body: SeedPeerClusterIn, session: DB, _: Root) -> SeedPeerClusterOut:
    if session.scalar(select(SeedPeerCluster).where(SeedPeerCluster.name == body.name)):
        raise Conflict(f"seed peer cluster {body.name!r} already exists")
    for cluster_id in body.scheduler_cluster_ids:
        if session.get(SchedulerCluster, cluster_id) is None:
            raise HTTPException(404, f"scheduler cluster {cluster_id} not found")
    stamp = now()
    cluster = SeedPeerCluster(name=body.name, bio=body.bio, created_at=stamp, updated_at=stamp)
    session.add(cluster)
    session.flush()
    for cluster_id in sorted(set(body.scheduler_cluster_ids)):
        session.add(
            SchedulerClusterSeedPeers(
                scheduler_cluster_id=cluster_id, seed_peer_cluster_id=cluster.id
            )
        )
    session.flush()
    return _seed_cluster_out(session, cluster)


@router.get("/seed-peer-clusters")
def list_seed_peer_clusters(session: DB, _: Reader) -> list[SeedPeerClusterOut]:
    clusters = session.scalars(select(SeedPeerCluster).order_by(SeedPeerCluster.id))
    return [_seed_cluster_out(session, c) for c in clusters]
