"""Workflows: a watched input directory bound to subtasks ("upload triggers processing").

A watcher looks at every enabled workflow's directory each second. A file counts as
arrived when its size and modification time held still across two looks and its name
does not start with a dot (uploads are written as `.name.part` and renamed). Each
arrival becomes one task, recorded so a restart never makes it twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from damselfly.database import utcnow
from damselfly.errors import Conflict, DamselflyError, InvalidInput, NotFound
from damselfly.logs import EventLog
from damselfly.media.models import MediaWorkflow, MediaWorkflowFile
from damselfly.media.paths import under_roots
from damselfly.media.service import MediaService
from damselfly.media.spec import freeze_subtasks

_REQUEST_KEYS = {
    "output_dir", "transcodes", "hls", "snapshots", "sampled_snapshots", "image_sprites",
    "animated_images", "enhancements", "content_understanding", "review", "priority", "notify",
}  # fmt: skip


def workflow_view(row: MediaWorkflow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "watch_dir": row.watch_dir,
        "request": row.request,
        "enabled": row.enabled,
        "created_at": row.created_at.isoformat(),
    }


class Workflows:
    def __init__(self, sessions: sessionmaker[Session], media: MediaService) -> None:
        self.sessions = sessions
        self.media = media

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise InvalidInput("name must be 1-128 characters")
        watch = under_roots(str(body.get("watch_dir") or ""), self.media.settings.input_roots,
                            "watch_dir")  # fmt: skip
        request = body.get("request")
        if not isinstance(request, Mapping):
            raise InvalidInput("request must be an object: the subtasks a new file gets")
        unknown = sorted(set(request) - _REQUEST_KEYS)
        if unknown:
            raise InvalidInput(f"a workflow's request cannot set {', '.join(unknown)}")
        freeze_subtasks(request, self.media.template)  # checked now, frozen per task later
        watch.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        try:
            with self.sessions.begin() as session:
                row = MediaWorkflow(name=name, watch_dir=str(watch), request=dict(request),
                                    enabled=True, created_at=now, updated_at=now)  # fmt: skip
                session.add(row)
                session.flush()
                return workflow_view(row)
        except IntegrityError:
            raise Conflict(f"a workflow named {name!r} exists") from None

    def list(self) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(select(MediaWorkflow).order_by(MediaWorkflow.id)).all()
            return [workflow_view(r) for r in rows]

    def get_row(self, session: Session, workflow_id: int) -> MediaWorkflow:
        row = session.get(MediaWorkflow, workflow_id)
        if row is None:
            raise NotFound(f"workflow {workflow_id} does not exist")
        return row

    def set_enabled(self, workflow_id: int, enabled: bool) -> dict[str, Any]:
        with self.sessions.begin() as session:
            row = self.get_row(session, workflow_id)
            row.enabled, row.updated_at = enabled, utcnow()
            return workflow_view(row)

    def delete(self, workflow_id: int) -> None:
        with self.sessions.begin() as session:
            session.delete(self.get_row(session, workflow_id))

    def watch_dir(self, workflow_id: int) -> Path:
        with self.sessions() as session:
            return Path(self.get_row(session, workflow_id).watch_dir)

    # the watcher
    def scan(self, seen: dict[tuple[int, str], tuple[int, int]], log: EventLog) -> int:
        """One look at every enabled workflow; tasks created."""
        with self.sessions() as session:
            flows = [(w.id, Path(w.watch_dir), dict(w.request)) for w in session.scalars(
                select(MediaWorkflow).where(MediaWorkflow.enabled.is_(True)))]  # fmt: skip
            done = {(f.workflow_id, f.path) for f in session.scalars(select(MediaWorkflowFile))}
        created = 0
        for flow_id, folder, request in flows:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                key = (flow_id, entry.path)
                if key in done:
                    continue
                stat = entry.stat()
                now = (stat.st_size, stat.st_mtime_ns)
                if seen.get(key) != now:
                    seen[key] = now  # still arriving, or new: look again next time
                    continue
                created += self._arrived(flow_id, entry.path, request, now, log)
                seen.pop(key, None)
        return created

    def _arrived(
        self, flow_id: int, path: str, request: dict, stat: tuple[int, int], log: EventLog
    ) -> int:
        record = MediaWorkflowFile(workflow_id=flow_id, path=path, size=stat[0], mtime_ns=stat[1],
                                   task_id=None, error="", created_at=utcnow())  # fmt: skip
        try:
            with self.sessions.begin() as session:
                session.add(record)  # claimed first: two watchers never both create it
        except IntegrityError:
            return 0
        try:
            task = self.media.create({**request, "input": {"path": path}}, workflow_id=flow_id)
            task_id, error = task["task_id"], ""
        except DamselflyError as exc:
            task_id, error = None, str(exc)
            log.warning("workflow could not create a task", workflow_id=flow_id, path=path,
                        error=error)  # fmt: skip
        with self.sessions.begin() as session:
            row = session.get(MediaWorkflowFile, (flow_id, path))
            if row is not None:
                row.task_id, row.error = task_id, error
        return 1 if task_id else 0


class Watcher:
    """Runs `Workflows.scan` every `interval` seconds on a thread until stopped."""

    def __init__(self, workflows: Workflows, log: EventLog, interval: float = 1.0) -> None:
        self.workflows = workflows
        self.log = log
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="damselfly-workflows", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        seen: dict[tuple[int, str], tuple[int, int]] = {}
        while not self._stop.wait(self.interval):
            try:
                self.workflows.scan(seen, self.log)
            except Exception as exc:  # a bad moment (database busy) must not end the watcher
                self.log.error("workflow scan failed", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
