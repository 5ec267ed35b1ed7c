"""Media rows: tasks, their subtasks, custom templates, workflows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from damselfly.database import Base


class MediaTask(Base):
    __tablename__ = "media_tasks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    failed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    error_code: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    input: Mapped[dict[str, Any]] = mapped_column(JSON)  # {kind: url|path|upload, ...}
    output_dir: Mapped[str] = mapped_column(Text)  # absolute, under an output root
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # frozen: templates copied in
    priority: Mapped[int] = mapped_column(Integer, default=0)
    session_id: Mapped[str | None] = mapped_column(String(256), index=True)
    session_context: Mapped[str] = mapped_column(Text, default="")
    media_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # probed input
    run: Mapped[int] = mapped_column(Integer, default=1)  # counts restarts + 1
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # earlier runs
    recoveries: Mapped[int] = mapped_column(Integer, default=0)  # runs a dead worker cut short
    job_id: Mapped[int | None] = mapped_column(Integer)
    workflow_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    begin_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    subtasks: Mapped[list[MediaSubtask]] = relationship(
        order_by="MediaSubtask.seq", cascade="all, delete-orphan", lazy="selectin"
    )


class MediaSubtask(Base):
    __tablename__ = "media_subtasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("media_tasks.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # template params + its own args
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    begin_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MediaTemplate(Base):
    """A custom template; the presets live in code (`templates.PRESETS`)."""

    __tablename__ = "media_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MediaWorkflow(Base):
    """A watched input directory bound to subtasks: a file arriving there becomes a task."""

    __tablename__ = "media_workflows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    watch_dir: Mapped[str] = mapped_column(Text)  # under an input root
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # a task request without input
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MediaWorkflowFile(Base):
    """A file a workflow has turned into a task (so a restart does not do it twice)."""

    __tablename__ = "media_workflow_files"

    workflow_id: Mapped[int] = mapped_column(
        ForeignKey("media_workflows.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    task_id: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
