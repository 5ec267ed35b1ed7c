"""Jobs as rows: submit, run, recover after a crash, cancel.

A row is the truth; the queue only carries its ID. A worker claims a job by
setting `started_at` where it is still empty, so a job delivered twice (a re-enqueue
after a restart) runs once. On start, the engine fails jobs a killed manager left
half-run (with an error log saying so) and re-enqueues the ones never started: no
job stays PENDING forever.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from huey.api import Huey
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from damselfly.database import utcnow as now
from damselfly.errors import Conflict, DamselflyError, NotFound
from damselfly.jobs.models import Job
from damselfly.logs import EventLog

PENDING, SUCCESS, FAILURE = "PENDING", "SUCCESS", "FAILURE"

# reports how far a job is, 0-100
Progress = Callable[[int], None]
# (frozen args, the job's scheduler cluster IDs, progress) -> result; raise to fail it
Handler = Callable[[Mapping[str, Any], list[int], Progress], dict[str, Any]]


class JobFailed(DamselflyError):
    """A job that ran and could not do its work; `result` is still kept."""

    code = "JobFailed"

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True, slots=True)
class JobType:
    handler: Handler
    timeout: float = 600.0
    priority: int = 0  # higher runs first
    retries: int = 0  # further attempts after a failure, with the same frozen args
    retry_delay: float = 1.0
    # told (after the row is failed) about a job a dead process left half-run
    interrupted: Callable[[Job], None] | None = None


class JobEngine:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: Huey,
        types: Mapping[str, JobType],
        log: EventLog,
    ) -> None:
        self.sessions = sessions
        self.queue = queue
        self.types = dict(types)
        self.log = log
        self._listeners: list[Callable[[Job], None]] = []
        self._lock = threading.Lock()
        self._deliver = queue.task(name="damselfly.run_job", retries=0)(self.run)

    def subscribe(self, listener: Callable[[Job], None]) -> Callable[[], None]:
        """`listener` is called (on any thread) whenever a job changes; returns the
        function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _changed(self, job: Job) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(job)

    def submit(
        self,
        type_: str,
        args: dict[str, Any],
        *,
        user_id: int | None,
        cluster_ids: list[int],
        bio: str = "",
        priority: int | None = None,
    ) -> Job:
        """A new PENDING job, queued; `priority` (higher first) overrides its type's."""
        if type_ not in self.types:
            raise NotFound(f"unknown job type {type_!r}; known: {', '.join(sorted(self.types))}")
        stamp = now()
        with self.sessions.begin() as session:
            job = Job(
                type=type_,
                state=PENDING,
                bio=bio,
                args=args,
                result=None,
                error_log="",
                scheduler_cluster_ids=cluster_ids,
                user_id=user_id,
                created_at=stamp,
                updated_at=stamp,
                priority=self.types[type_].priority if priority is None else priority,
            )
            session.add(job)
            session.flush()
        self._enqueue(job)
        self.log.info("job created", job_id=job.id, type=type_)
        self._changed(job)
        return job

    def _enqueue(self, job: Job, delay: float | None = None) -> None:
        self.queue.enqueue(self._deliver.s(job.id, priority=job.priority, delay=delay))

    def cancel(self, job_id: int) -> Job:
        """A queued job that has not started ends as FAILURE, marked canceled."""
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.started_at.is_(None), Job.state == PENDING)
                .values(
                    state=FAILURE,
                    error_log="canceled before it started",
                    result={"canceled": True},
                    started_at=now(),
                    finished_at=now(),
                    updated_at=now(),
                )
            ).rowcount
            job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if not claimed:
            raise Conflict(f"job {job_id} has already started ({job.state}); it cannot be canceled")
        self.log.info("job canceled", job_id=job_id)
        self._changed(job)
        return job

    def run(self, job_id: int) -> None:
        """Worker side: claim the job, run its handler under its timeout, record the end
        (or, while attempts remain, put it back in the queue)."""
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.started_at.is_(None))
                .values(started_at=now(), updated_at=now(), attempts=Job.attempts + 1)
            ).rowcount
            job = session.get(Job, job_id)
        if not claimed or job is None:
            return  # run already, canceled, or gone
        self._changed(job)
        kind = self.types[job.type]
        started = time.monotonic()
        state, result, error = SUCCESS, None, ""
        try:
            result = _with_timeout(
                kind.handler,
                kind.timeout,
                job.args,
                job.scheduler_cluster_ids,
                lambda percent: self._progress(job_id, percent),
            )
        except JobFailed as exc:
            state, result, error = FAILURE, exc.result, str(exc)
        except FutureTimeout:
            state, error = FAILURE, f"the job did not finish within {kind.timeout:g}s"
        except DamselflyError as exc:
            state, error = FAILURE, str(exc)
        except Exception as exc:  # a bug: keep the trace in the job's error log
            state = FAILURE
            error = f"internal error: {exc}\n" + traceback.format_exc()
        retry = state == FAILURE and job.attempts <= kind.retries
        with self.sessions.begin() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.result, job.error_log, job.updated_at = result, error, now()
            if retry:
                job.started_at = None  # claimable again
            else:
                job.state, job.finished_at = state, now()
                job.progress = 100 if state == SUCCESS else job.progress
        self.log.info(
            "job attempt failed, retrying" if retry else "job finished",
            job_id=job_id,
            type=job.type,
            state=state,
            attempt=job.attempts,
            cost=f"{time.monotonic() - started:.3f}s",
        )
        if retry:
            self._enqueue(job, delay=kind.retry_delay)
        self._changed(job)

    def _progress(self, job_id: int, percent: int) -> None:
        with self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            job.progress = max(0, min(100, int(percent)))
            job.updated_at = now()
        self._changed(job)

    def recover(self) -> tuple[int, int]:
        """After a crash: fail the half-run, re-enqueue the never-started. Counts."""
        mine = Job.type.in_(list(self.types))  # engines sharing a database keep to their types
        with self.sessions.begin() as session:
            stuck = session.scalars(
                select(Job).where(mine, Job.state == PENDING, Job.started_at.is_not(None))
            ).all()
            for job in stuck:
                job.state = FAILURE
                job.error_log = (
                    "the manager stopped while this job ran; run it again to retry "
                    "(its arguments are kept)"
                )
                job.finished_at = job.updated_at = now()
            waiting = session.scalars(
                select(Job).where(mine, Job.state == PENDING, Job.started_at.is_(None))
            ).all()
        for job in stuck:
            hook = self.types[job.type].interrupted
            if hook is not None:
                hook(job)
        for job in waiting:
            self._enqueue(job)
        if stuck or waiting:
            self.log.warning("jobs recovered", failed=len(stuck), requeued=len(waiting))
        return len(stuck), len(waiting)


def _with_timeout(
    handler: Handler,
    timeout: float,
    args: Mapping[str, Any],
    cluster_ids: list[int],
    progress: Progress,
) -> dict[str, Any]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="damselfly-job")
    try:
        return pool.submit(handler, args, cluster_ids, progress).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)
