"""The `media_task` job: fetch the input, probe it, run each subtask, record the end.

Subtasks run in order and independently: one failing does not stop the next. A
worker that is told to stop cancels the frame loop, discards the staged files and
hands the task back to the queue; one that is killed leaves only a staging directory,
which the next start sweeps before running the task again.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from damselfly.database import utcnow
from damselfly.jobs.engine import JobType, Progress
from damselfly.logs import EventLog
from damselfly.media.models import MediaSubtask, MediaTask
from damselfly.media.service import JOB_TYPE, MediaService
from damselfly.media.states import ErrorCode, SubtaskStatus, TaskStatus
from damselfly.media.work.control import Cancelled, Control, MediaFailure
from damselfly.media.work.inputs import local_input
from damselfly.media.work.probe import probe
from damselfly.media.work.staging import Staging, sweep
from damselfly.media.work.steps import STEPS, StepInput
from damselfly.settings import MediaSettings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _stem(name: str) -> str:
    stem = Path(name).stem if "." in name else name
    return _UNSAFE.sub("_", stem).strip("._")[:80] or "input"


class MediaRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        service: MediaService,
        settings: MediaSettings,
        log: EventLog,
        stop: threading.Event,
    ) -> None:
        self.sessions = sessions
        self.service = service
        self.settings = settings
        self.log = log
        self.stop = stop

    def job_types(self) -> dict[str, JobType]:
        return {
            JOB_TYPE: JobType(
                self.run, timeout=24 * 3600, retries=0, interrupted=self.service.interrupted
            )
        }

    def _claim(self, task_id: str, run: int) -> bool:
        now = utcnow()
        with self.sessions.begin() as session:
            return bool(
                session.execute(
                    update(MediaTask)
                    .where(
                        MediaTask.id == task_id,
                        MediaTask.run == run,
                        MediaTask.status == TaskStatus.WAITING,
                    )
                    .values(status=TaskStatus.PROCESSING, begin_at=now, updated_at=now)
                ).rowcount
            )

    def run(self, args: Mapping[str, Any], _clusters: list[int], progress: Progress) -> dict:
        task_id, run = args["task_id"], args["run"]
        if not self._claim(task_id, run):
            return {"skipped": "the task was terminated, restarted or already run"}
        self.service.changed(task_id)
        started = time.monotonic()
        self.log.info("media task started", task_id=task_id, run=run)
        try:
            self._run(task_id, progress)
        except Cancelled:
            self.log.info("media task handed back (worker stopping)", task_id=task_id)
            self.service.requeue(task_id, run)
            return {"requeued": True}
        view = self.service.get(task_id)
        self.log.info(
            "media task finished",
            task_id=task_id,
            failed=str(view["failed"]).lower(),
            cost=f"{time.monotonic() - started:.3f}s",
        )
        self.service.changed(task_id)
        return {"task_id": task_id, "failed": view["failed"]}

    def _run(self, task_id: str, progress: Progress) -> None:
        with self.sessions() as session:
            task = session.get(MediaTask, task_id)
            assert task is not None
            source_spec, output_dir = dict(task.input), Path(task.output_dir)
            subtasks = [(s.seq, s.type, dict(s.spec)) for s in task.subtasks]
        output_dir.mkdir(parents=True, exist_ok=True)
        sweep(output_dir)
        try:
            source = local_input(source_spec, self.settings)
            info = probe(source, f"the input {source_spec['name']}")
            info["source_path"] = str(source)
        except MediaFailure as exc:
            self._finish(task_id, failure=exc)
            return
        with self.sessions.begin() as session:
            session.execute(
                update(MediaTask).where(MediaTask.id == task_id).values(media_info=info)
            )
        stem = _stem(source_spec["name"])
        used: set[str] = set()
        for n, (seq, kind, spec) in enumerate(subtasks):
            label = f"{stem}_{kind}" + (
                f"_{spec['template_id']}" if spec.get("template_id") else ""
            )
            if label in used:
                label = f"{label}_{seq}"
            used.add(label)

            def report(percent: int, seq: int = seq, n: int = n) -> None:
                self._subtask(task_id, seq, progress=percent)
                progress((100 * n + percent) // len(subtasks))
                self.service.changed(task_id)

            self._subtask(task_id, seq, status=SubtaskStatus.PROCESSING, begin_at=utcnow())
            self.service.changed(task_id)
            control = Control(self.stop, report)
            try:
                with Staging(output_dir, str(seq)) as staging:
                    step = STEPS[kind](
                        StepInput(source, staging, label, spec, float(info["duration"]), control)
                    )
                    outputs = staging.commit(step.described)
                self._subtask(
                    task_id,
                    seq,
                    status=SubtaskStatus.SUCCESS,
                    progress=100,
                    outputs=outputs,
                    result=step.result,
                    finish_at=utcnow(),
                )
            except Cancelled:
                raise
            except MediaFailure as exc:
                self._subtask(
                    task_id,
                    seq,
                    status=SubtaskStatus.FAIL,
                    error_code=exc.code,
                    message=str(exc),
                    finish_at=utcnow(),
                )
            except Exception as exc:  # a bug: the subtask fails with the trace in the log
                self.log.error(
                    "media subtask crashed",
                    task_id=task_id,
                    seq=seq,
                    error=f"{exc}",
                    trace=traceback.format_exc(),
                )
                self._subtask(
                    task_id,
                    seq,
                    status=SubtaskStatus.FAIL,
                    error_code=ErrorCode.INTERNAL,
                    message=f"internal error: {type(exc).__name__}: {exc}",
                    finish_at=utcnow(),
                )
            self.service.changed(task_id)
        self._finish(task_id)

    def _subtask(self, task_id: str, seq: int, **values: Any) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(MediaSubtask)
                .where(MediaSubtask.task_id == task_id, MediaSubtask.seq == seq)
                .values(**values)
            )
            # the task's version moves with its subtasks, so other processes' change
            # feeds see progress too
            session.execute(
                update(MediaTask).where(MediaTask.id == task_id).values(updated_at=utcnow())
            )

    def _finish(self, task_id: str, failure: MediaFailure | None = None) -> None:
        now = utcnow()
        with self.sessions.begin() as session:
            task = session.get(MediaTask, task_id)
            assert task is not None
            if failure is not None:  # the input itself: every subtask fails with its code
                for sub in task.subtasks:
                    sub.status, sub.error_code, sub.message = (
                        SubtaskStatus.FAIL,
                        failure.code,
                        str(failure),
                    )
                    sub.finish_at = now
            failed = [s for s in task.subtasks if s.status == SubtaskStatus.FAIL]
            task.status, task.failed, task.finish_at, task.updated_at = (
                TaskStatus.FINISH,
                bool(failed),
                now,
                now,
            )
            task.error_code = failed[0].error_code if failed else ""
            task.message = failed[0].message if failed else ""
