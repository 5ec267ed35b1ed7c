"""The manager's tables (SQLAlchemy 2.0). Schema changes go through Alembic
(`migrations/`), never `create_all`, so PostgreSQL and SQLite stay in step.
Jobs are `damselfly.jobs.models.Job`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from damselfly.database import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # root | guest
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Token(Base):
    """A personal access token; only its SHA-256 is kept."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SchedulerCluster(Base):
    __tablename__ = "scheduler_clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    bio: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Scheduler(Base):
    """A scheduler that registered with the manager, in one cluster."""

    __tablename__ = "schedulers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("scheduler_clusters.id", ondelete="CASCADE"), index=True
    )
    hostname: Mapped[str] = mapped_column(String(256))
    ip: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # active | inactive
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SeedPeerCluster(Base):
    """A group of seed peers serving the scheduler clusters that point at it."""

    __tablename__ = "seed_peer_clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    bio: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SchedulerClusterSeedPeers(Base):
    """Which seed-peer clusters serve which scheduler clusters."""

    __tablename__ = "scheduler_cluster_seed_peer_clusters"

    scheduler_cluster_id: Mapped[int] = mapped_column(
        ForeignKey("scheduler_clusters.id", ondelete="CASCADE"), primary_key=True
    )
    seed_peer_cluster_id: Mapped[int] = mapped_column(
        ForeignKey("seed_peer_clusters.id", ondelete="CASCADE"), primary_key=True
    )
