"""The operations on media tasks: create, list, detail, restart, abort, templates.

Each task is run by one job of the media job engine (`media_task`, args: task ID and
run number). A row update that checks the status is what decides every race: abort
only takes a WAITING task, a worker only starts a WAITING task of its run, restart
only takes a FINISH one.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from damselfly.database import utcnow
from damselfly.errors import (
    Conflict,
    DuplicateSession,
    InvalidInput,
    InvalidTaskId,
    MediaTaskNotFound,
    TemplateNotFound,
)
from damselfly.jobs.engine import JobEngine
from damselfly.jobs.listeners import Listeners, version_of
from damselfly.jobs.models import Job
from damselfly.media.models import MediaSubtask, MediaTask, MediaTemplate
from damselfly.media.paths import under_roots
from damselfly.media.spec import check_priority, freeze_subtasks
from damselfly.media.states import ErrorCode, SubtaskStatus, TaskStatus
from damselfly.media.templates import CUSTOM_ID_START, PRESETS, Template, params_dict, parse_params
from damselfly.settings import MediaSettings

JOB_TYPE = "media_task"
SESSION_WINDOW = timedelta(days=3)
MAX_RECOVERIES = 2  # a task whose worker died this often fails instead of looping


def new_task_id() -> str:
    return f"mt-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(8)}"


def check_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id.startswith("mt-") or len(task_id) > 40:
        raise InvalidTaskId(f"{task_id!r} is not a media task ID (mt-YYYYMMDD-…)")
    return task_id


def aware(value: datetime | None) -> datetime | None:
    """SQLite gives back naive times; every time we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat() if value else None


def subtask_view(sub: MediaSubtask) -> dict[str, Any]:
    return {
        "seq": sub.seq,
        "type": sub.type,
        "status": sub.status,
        "progress": sub.progress,
        "template_id": sub.spec.get("template_id"),
        "input": sub.spec,
        "outputs": sub.outputs or [],
        "result": sub.result,
        "error_code": sub.error_code,
        "message": sub.message,
        "begin_at": _iso(sub.begin_at),
        "finish_at": _iso(sub.finish_at),
    }


def task_view(task: MediaTask, *, detail: bool = True) -> dict[str, Any]:
    view = {
        "task_id": task.id,
        "status": task.status,
        "failed": task.failed,
        "error_code": task.error_code,
        "message": task.message,
        "input": task.input,
        "output_dir": task.output_dir,
        "priority": task.priority,
        "session_id": task.session_id,
        "session_context": task.session_context,
        "workflow_id": task.workflow_id,
        "run": task.run,
        "restarts": task.run - 1,
        "created_at": _iso(task.created_at),
        "begin_at": _iso(task.begin_at),
        "finish_at": _iso(task.finish_at),
        "progress": round(sum(s.progress for s in task.subtasks) / max(1, len(task.subtasks))),
    }
    if detail:
        view.update(
            request=_masked(task.request),
            media_info=task.media_info,
            history=task.history,
            subtasks=[subtask_view(s) for s in task.subtasks],
        )
    return view


class MediaService:
    def __init__(
        self, sessions: sessionmaker[Session], jobs: JobEngine, settings: MediaSettings
    ) -> None:
        self.sessions = sessions
        self.jobs = jobs
        self.settings = settings
        self.listeners: Listeners[dict[str, Any]] = Listeners()

    # changes, for SSE and webhooks
    def subscribe(
        self, listener: Callable[[dict[str, Any]], None], *, everywhere: bool = False
    ) -> Callable[[], None]:
        """`listener` gets a task's view whenever this process changes it, and with
        `everywhere` also when another process did (webhooks must not)."""
        return self.listeners.subscribe(listener, everywhere=everywhere)

    def changed(self, task_id: str) -> None:
        if not self.listeners.any():
            return
        with self.sessions() as session:
            task = session.get(MediaTask, task_id)
            if task is None:
                return
            view = task_view(task)
            version = version_of(task.updated_at)
        self.listeners.changed_here(task_id, version, view)

    def changed_elsewhere(self, task_id: str, stamp: datetime) -> None:
        self.listeners.changed_elsewhere(task_id, version_of(stamp), lambda: self._view(task_id))

    def _view(self, task_id: str) -> dict[str, Any] | None:
        with self.sessions() as session:
            task = session.get(MediaTask, task_id)
            return task_view(task) if task is not None else None

    # templates
    def template(self, template_id: int, kind: str) -> Template:
        preset = PRESETS.get(template_id)
        if preset is not None and preset.kind == kind:
            return preset
        if template_id >= CUSTOM_ID_START:
            with self.sessions() as session:
                row = session.get(MediaTemplate, template_id - CUSTOM_ID_START + 1)
                if row is not None and row.kind == kind:
                    return _custom(row)
        raise TemplateNotFound(
            f"there is no {kind} template {template_id}; list them with GET /api/v1/media/templates"
        )

    def templates(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(select(MediaTemplate).order_by(MediaTemplate.id)).all()
            custom = [_custom(r) for r in rows]
        listed = [*PRESETS.values(), *custom]
        return [t.as_dict() for t in listed if kind is None or t.kind == kind]

    def save_template(self, body: Mapping[str, Any], template_id: int | None = None) -> dict:
        if template_id is not None and template_id < CUSTOM_ID_START:
            raise Conflict(f"template {template_id} is a preset; presets cannot change")
        kind = body.get("kind")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise InvalidInput("name must be 1-128 characters")
        params = params_dict(parse_params(str(kind), body.get("params") or {}))
        with self.sessions.begin() as session:
            if template_id is None:
                row = MediaTemplate(
                    kind=kind,
                    name=name,
                    comment="",
                    params=params,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                session.add(row)
            else:
                row = session.get(MediaTemplate, template_id - CUSTOM_ID_START + 1)
                if row is None:
                    raise TemplateNotFound(f"there is no custom template {template_id}")
                if row.kind != kind:
                    raise InvalidInput(f"template {template_id} is a {row.kind} template")
                row.name, row.params, row.updated_at = name, params, utcnow()
            row.comment = str(body.get("comment") or "")[:1000]
            session.flush()
            return _custom(row).as_dict()

    def delete_template(self, template_id: int) -> None:
        if template_id < CUSTOM_ID_START:
            raise Conflict(f"template {template_id} is a preset; presets cannot be deleted")
        with self.sessions.begin() as session:
            row = session.get(MediaTemplate, template_id - CUSTOM_ID_START + 1)
            if row is None:
                raise TemplateNotFound(f"there is no custom template {template_id}")
            session.delete(row)

    # tasks
    def _input(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, Mapping) or len(raw) != 1:
            raise InvalidInput("input must be one of {url}, {path} or {upload}")
        ((kind, value),) = raw.items()
        if kind == "url":
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise InvalidInput("input url must be an http(s) URL")
            if len(value) > 4096:
                raise InvalidInput("input url is longer than 4096 characters")
            name = value.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "input"
            return {"kind": "url", "url": value, "name": name}
        if kind == "path":
            path = under_roots(value, self.settings.input_roots, "input path")
            if not path.is_file():
                raise InvalidInput(f"input path {value!r} is not a file")
            return {"kind": "path", "path": str(path), "name": path.name}
        if kind == "upload":
            path = self.upload_path(str(value))
            return {"kind": "upload", "upload": str(value), "path": str(path), "name": path.name}
        raise InvalidInput(f"input kind {kind!r} is not url, path or upload")

    def upload_path(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not upload_id.isalnum() or len(upload_id) > 64:
            raise InvalidInput(f"{upload_id!r} is not an upload ID")
        folder = self.settings.uploads / upload_id
        files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        if len(files) != 1:
            raise InvalidInput(f"upload {upload_id} does not exist")
        return files[0]

    def create(self, request: Mapping[str, Any], *, workflow_id: int | None = None) -> dict:
        if not isinstance(request, Mapping):
            raise InvalidInput("the request must be a JSON object")
        source = self._input(request.get("input"))
        output_dir = under_roots(
            request.get("output_dir") or "/", self.settings.output_roots, "output_dir", bucket=True
        )
        subtasks = freeze_subtasks(request, self.template)
        priority = check_priority(request.get("priority", 0))
        session_id = request.get("session_id")
        if session_id is not None and (not isinstance(session_id, str) or len(session_id) > 256):
            raise InvalidInput("session_id must be a string of at most 256 characters")
        context = request.get("session_context") or ""
        if not isinstance(context, str) or len(context) > 1000:
            raise InvalidInput("session_context must be a string of at most 1000 characters")
        notify = _notify(request.get("notify"))
        frozen = {
            "input": source,
            "output_dir": str(output_dir),
            "subtasks": subtasks,
            "priority": priority,
            "notify": notify,
        }
        now = utcnow()
        task_id = new_task_id()
        with self.sessions.begin() as session:
            if session_id:
                seen = session.scalar(
                    select(MediaTask.id).where(
                        MediaTask.session_id == session_id,
                        MediaTask.created_at >= now - SESSION_WINDOW,
                    )
                )
                if seen:
                    raise DuplicateSession(
                        f"session_id {session_id!r} was used by task {seen} within 3 days; "
                        "this request is a duplicate"
                    )
            task = MediaTask(
                id=task_id,
                status=TaskStatus.WAITING,
                failed=False,
                error_code="",
                message="",
                input=source,
                output_dir=str(output_dir / task_id),
                request=frozen,
                priority=priority,
                session_id=session_id,
                session_context=context,
                media_info=None,
                run=1,
                history=[],
                recoveries=0,
                workflow_id=workflow_id,
                created_at=now,
                updated_at=now,
            )
            task.subtasks = [_fresh_subtask(n + 1, spec) for n, spec in enumerate(subtasks)]
            session.add(task)
        self._submit(task_id, 1, priority)
        return self.get(task_id)

    def _submit(self, task_id: str, run: int, priority: int) -> None:
        job = self.jobs.submit(
            JOB_TYPE,
            {"task_id": task_id, "run": run},
            user_id=None,
            cluster_ids=[],
            priority=priority,
        )
        with self.sessions.begin() as session:
            session.execute(update(MediaTask).where(MediaTask.id == task_id).values(job_id=job.id))
        self.changed(task_id)

    def webhook_key(self, task_id: str) -> str | None:
        with self.sessions() as session:
            task = session.get(MediaTask, task_id)
            notify = (task.request.get("notify") or {}) if task is not None else {}
        return notify.get("key")

    def cached_input(self, task_id: str) -> Path | None:
        """Where a URL input was fetched to on this machine, once a worker has run."""
        with self.sessions() as session:
            task = session.get(MediaTask, task_id)
            info = (task.media_info or {}) if task is not None else {}
        return Path(info["source_path"]) if info.get("source_path") else None

    def get(self, task_id: str) -> dict[str, Any]:
        check_task_id(task_id)
        with self.sessions() as session:
            task = session.get(MediaTask, task_id)
            if task is None:
                raise MediaTaskNotFound(f"media task {task_id} does not exist")
            return task_view(task)

    def list(
        self,
        *,
        status: str | None = None,
        task_id: str | None = None,
        failed: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        per_page: int = 10,
    ) -> tuple[list[dict[str, Any]], int]:
        query = select(MediaTask)
        if status:
            if status not in TaskStatus.__members__:
                raise InvalidInput("status must be WAITING, PROCESSING or FINISH")
            query = query.where(MediaTask.status == status)
        if task_id:
            query = query.where(MediaTask.id.contains(task_id.strip()))
        if failed is not None:
            query = query.where(MediaTask.failed.is_(failed))
        if since:
            query = query.where(MediaTask.created_at >= since)
        if until:
            query = query.where(MediaTask.created_at < until)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(MediaTask.created_at.desc(), MediaTask.id.desc())
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
            return [task_view(t, detail=False) for t in rows], total

    def abort(self, task_id: str) -> dict[str, Any]:
        """Take a WAITING task out of the queue for good (409 for any other)."""
        check_task_id(task_id)
        now = utcnow()
        with self.sessions.begin() as session:
            taken = session.execute(
                update(MediaTask)
                .where(MediaTask.id == task_id, MediaTask.status == TaskStatus.WAITING)
                .values(
                    status=TaskStatus.FINISH,
                    failed=True,
                    error_code=ErrorCode.ABORTED,
                    message="terminated while waiting",
                    finish_at=now,
                    updated_at=now,
                )
            ).rowcount
            task = session.get(MediaTask, task_id)
            if task is None:
                raise MediaTaskNotFound(f"media task {task_id} does not exist")
            if not taken:
                raise Conflict(
                    f"media task {task_id} is {task.status}; only WAITING tasks can be terminated"
                )
            for sub in task.subtasks:
                sub.status, sub.error_code, sub.message = (
                    SubtaskStatus.FAIL,
                    ErrorCode.ABORTED,
                    "terminated while waiting",
                )
            job_id = task.job_id
        if job_id is not None:
            # a worker may have taken the job a moment ago; it finds the task FINISH and stops
            with contextlib.suppress(Conflict):
                self.jobs.cancel(job_id)
        self.changed(task_id)
        return self.get(task_id)

    def restart(self, task_id: str) -> dict[str, Any]:
        """Run every subtask again with the frozen parameters (FINISH tasks only)."""
        check_task_id(task_id)
        now = utcnow()
        with self.sessions.begin() as session:
            task = session.get(MediaTask, task_id)
            if task is None:
                raise MediaTaskNotFound(f"media task {task_id} does not exist")
            taken = session.execute(
                update(MediaTask)
                .where(
                    MediaTask.id == task_id,
                    MediaTask.status == TaskStatus.FINISH,
                    MediaTask.run == task.run,
                )
                .values(
                    status=TaskStatus.WAITING,
                    run=task.run + 1,
                    failed=False,
                    error_code="",
                    message="",
                    begin_at=None,
                    finish_at=None,
                    updated_at=now,
                    recoveries=0,
                    history=[*task.history, _archive(task)],
                )
            ).rowcount
            if not taken:
                raise Conflict(
                    f"media task {task_id} is {task.status}; only FINISH tasks can be restarted"
                )
            session.expire(task)
            task = session.get(MediaTask, task_id)
            assert task is not None
            for sub in task.subtasks:
                _reset(sub)
            run, priority = task.run, task.priority
        self._submit(task_id, run, priority)
        return self.get(task_id)

    def interrupted(self, job: Job) -> None:
        """A worker died mid-task: queue it again (or fail it after MAX_RECOVERIES)."""
        task_id, run = job.args.get("task_id"), job.args.get("run")
        now = utcnow()
        with self.sessions.begin() as session:
            task = session.get(MediaTask, task_id)
            if task is None or task.run != run or task.status != TaskStatus.PROCESSING:
                return
            _sweep(task)
            if task.recoveries >= MAX_RECOVERIES:
                task.status, task.failed, task.finish_at = TaskStatus.FINISH, True, now
                task.error_code = ErrorCode.WORKER_STOPPED
                task.message = (
                    f"the worker stopped {task.recoveries + 1} times while running "
                    "this task; restart it to try again"
                )
                for sub in task.subtasks:
                    if sub.status in (SubtaskStatus.WAITING, SubtaskStatus.PROCESSING):
                        sub.status, sub.error_code = SubtaskStatus.FAIL, ErrorCode.WORKER_STOPPED
                        sub.message, sub.finish_at = task.message, now
                requeue = False
            else:
                task.status, task.recoveries, task.begin_at = (
                    TaskStatus.WAITING,
                    task.recoveries + 1,
                    None,
                )
                for sub in task.subtasks:
                    _reset(sub)
                requeue = True
            task.updated_at = now
            priority = task.priority
        if requeue:
            self._submit(task_id, run, priority)
        else:
            self.changed(task_id)

    def requeue(self, task_id: str, run: int) -> None:
        """A worker that stops gracefully hands its task back."""
        with self.sessions.begin() as session:
            task = session.get(MediaTask, task_id)
            if task is None or task.run != run or task.status != TaskStatus.PROCESSING:
                return
            _sweep(task)
            task.status, task.begin_at, task.updated_at = TaskStatus.WAITING, None, utcnow()
            for sub in task.subtasks:
                _reset(sub)
            priority = task.priority
        self._submit(task_id, run, priority)


def _masked(request: dict[str, Any]) -> dict[str, Any]:
    """The frozen request as users see it: a webhook key is a secret."""
    notify = request.get("notify")
    if notify and notify.get("key"):
        return {**request, "notify": {**notify, "key": "******"}}
    return request


def _custom(row: MediaTemplate) -> Template:
    return Template(
        row.id + CUSTOM_ID_START - 1,
        row.kind,
        row.name,
        row.params,
        preset=False,
        comment=row.comment,
    )


def _fresh_subtask(seq: int, spec: dict[str, Any]) -> MediaSubtask:
    return MediaSubtask(
        seq=seq,
        type=spec["type"],
        status=SubtaskStatus.WAITING,
        progress=0,
        spec=spec,
        outputs=[],
        result=None,
        error_code="",
        message="",
    )


def _reset(sub: MediaSubtask) -> None:
    sub.status, sub.progress, sub.outputs, sub.result = SubtaskStatus.WAITING, 0, [], None
    sub.error_code = sub.message = ""
    sub.begin_at = sub.finish_at = None


def _archive(task: MediaTask) -> dict[str, Any]:
    return {
        "run": task.run,
        "failed": task.failed,
        "error_code": task.error_code,
        "message": task.message,
        "begin_at": _iso(task.begin_at),
        "finish_at": _iso(task.finish_at),
        "subtasks": [
            {k: v for k, v in subtask_view(s).items() if k != "input"} for s in task.subtasks
        ],
    }


def _sweep(task: MediaTask) -> None:
    from damselfly.media.work.staging import sweep

    sweep(Path(task.output_dir))


def _notify(raw: Any) -> dict[str, Any] | None:
    if raw in (None, {}):
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("notify must be an object {url, mode: finish|change, key?}")
    url, mode = raw.get("url"), raw.get("mode", "finish")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInput("notify.url must be an http(s) URL")
    if mode not in ("finish", "change"):
        raise InvalidInput("notify.mode must be finish or change")
    key = raw.get("key")
    if key is not None and not isinstance(key, str):
        raise InvalidInput("notify.key must be a string")
    return {"url": url, "mode": mode, "key": key}
