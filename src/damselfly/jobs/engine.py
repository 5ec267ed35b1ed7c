"""Jobs as rows: submit, run, recover after a crash, cancel.

A row is the truth; the queue only carries its ID. A worker claims a job by
setting `started_at` where it is still empty, so a job delivered twice (a re-enqueue
after a restart) runs once. The claim is a lease: the running process renews it, and
any process sharing the database takes back a job whose lease ran out (its process
died) - failing it, or letting its type queue it again. A process restarted in the
same place takes back its previous incarnation's jobs at once. Jobs never started are
queued again when the queue is found empty, so a lost queue (a Redis restart without
persistence) strands nothing: no job stays PENDING forever.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from huey.api import Huey
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from damselfly.database import utcnow as now
from damselfly.errors import Conflict, DamselflyError, NotFound
from damselfly.jobs.listeners import Listeners, version_of
from damselfly.jobs.models import Job
from damselfly.logs import EventLog

PENDING, SUCCESS, FAILURE = "PENDING", "SUCCESS", "FAILURE"
# the database restarting or out of reach, as opposed to a bug
DatabaseDown = (OperationalError, InterfaceError)

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
        *,
        node: str | None = None,
        lease: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.queue = queue
        self.types = dict(types)
        self.log = log
        # see jobs/node.py; without one, only expired leases are taken back
        self.node = node or f"{socket.gethostname()}:pid-{os.getpid()}"
        # "#" ends the node part: a restart in the same node knows its old incarnation's jobs
        self.owner = f"{self.node}#{os.getpid()}-{secrets.token_hex(3)}"
        self.lease = lease
        self.listeners: Listeners[Job] = Listeners()
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._deliver = queue.task(name="damselfly.run_job", retries=0)(self.run)

    def start_keeper(self) -> None:
        """Renew this process's leases and take back expired ones, in the background."""
        if self._keeper is None:
            self._keeper = threading.Thread(
                target=self._keep, name="damselfly-job-leases", daemon=True
            )
            self._keeper.start()

    def close(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)

    def _keep(self) -> None:
        beat = max(0.2, self.lease / 3)
        while not self._stop.wait(beat):
            try:
                self.renew()
                self.reap()
            except Exception as exc:  # a database blip must not end the keeper
                self.log.warning("job lease upkeep failed", error=_first_line(exc))

    def renew(self) -> int:
        """Extend the leases of the jobs this process is running."""
        with self._lock:
            running = list(self._running)
        if not running:
            return 0
        with self.sessions.begin() as session:
            return session.execute(
                update(Job)
                .where(Job.id.in_(running), Job.lease_owner == self.owner, Job.state == PENDING)
                .values(lease_expires_at=now() + timedelta(seconds=self.lease))
            ).rowcount

    def subscribe(
        self, listener: Callable[[Job], None], *, everywhere: bool = False
    ) -> Callable[[], None]:
        """`listener` is called (on any thread) whenever a job changes here, and with
        `everywhere` also when another process changed it; returns the function that
        unsubscribes it."""
        return self.listeners.subscribe(listener, everywhere=everywhere)

    def changed_elsewhere(self, job: Job) -> None:
        """A version of `job` another process wrote (from the change feed)."""
        self.listeners.changed_elsewhere(job.id, version_of(job.updated_at), lambda: job)

    def _changed(self, job: Job) -> None:
        stamp = job.updated_at
        self.listeners.changed_here(job.id, version_of(stamp) if stamp else None, job)

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
        try:
            self.queue.enqueue(self._deliver.s(job.id, priority=job.priority, delay=delay))
        except Exception as exc:  # Redis restarting: the row is kept, the keeper re-queues it
            self.log.warning("job not queued yet: queue unavailable", job_id=job.id,
                             error=_first_line(exc))  # fmt: skip

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
        try:
            self._claim_and_run(job_id)
        except DatabaseDown as exc:
            # unclaimed: the keeper queues it again; claimed: its lease runs out and
            # it is taken back once the database answers
            self.log.warning("job delivery failed: database unavailable", job_id=job_id,
                             error=_first_line(exc))  # fmt: skip

    def _claim_and_run(self, job_id: int) -> None:
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.started_at.is_(None), Job.state == PENDING)
                .values(
                    started_at=now(),
                    updated_at=now(),
                    attempts=Job.attempts + 1,
                    lease_owner=self.owner,
                    lease_expires_at=now() + timedelta(seconds=self.lease),
                )
            ).rowcount
            job = session.get(Job, job_id)
        if not claimed or job is None:
            return  # run already, canceled, or gone
        with self._lock:
            self._running.add(job_id)
        try:
            self._run_claimed(job)
        finally:
            with self._lock:
                self._running.discard(job_id)

    def _run_claimed(self, job: Job) -> None:
        job_id = job.id
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
        end: dict[str, Any] = {"result": result, "error_log": error, "updated_at": now()}
        if retry:  # claimable again
            end.update(started_at=None, lease_owner=None, lease_expires_at=None)
        else:
            end.update(state=state, finished_at=now())
            if state == SUCCESS:
                end["progress"] = 100
        kept, job = self._record_end(job_id, end)
        if not kept:
            # another process took the job back while this one was presumed dead
            self.log.warning("job result dropped: lease lost", job_id=job_id, state=state)
            return
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

    def _record_end(self, job_id: int, end: dict[str, Any]) -> tuple[bool, Job]:
        """The final write, retried while the database restarts (up to the lease: past
        it, others may take the job back anyway)."""
        deadline = time.monotonic() + max(self.lease, 5.0)
        delay = 0.2
        while True:
            try:
                with self.sessions.begin() as session:
                    kept = session.execute(
                        update(Job)
                        .where(
                            Job.id == job_id, Job.lease_owner == self.owner, Job.state == PENDING
                        )
                        .values(**end)
                    ).rowcount
                    job = session.get(Job, job_id)
                    assert job is not None
                return bool(kept), job
            except DatabaseDown:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _progress(self, job_id: int, percent: int) -> None:
        try:
            with self.sessions.begin() as session:
                job = session.get(Job, job_id)
                if job is None:
                    return
                job.progress = max(0, min(100, int(percent)))
                job.updated_at = now()
        except DatabaseDown:
            return  # progress is a hint; the job itself carries on
        self._changed(job)

    def recover(self) -> tuple[int, int]:
        """At start: take back what a dead process left - this node's earlier
        incarnations at once, others once their lease ran out - and queue again the
        jobs never started. Counts (taken back, queued again)."""
        taken = self.reap(at_start=True)
        with self.sessions() as session:
            waiting = session.scalars(
                select(Job).where(self._mine(), Job.state == PENDING, Job.started_at.is_(None))
            ).all()
        for job in waiting:
            self._enqueue(job)
        if taken or waiting:
            self.log.warning("jobs recovered", failed=taken, requeued=len(waiting))
        return taken, len(waiting)

    def _mine(self) -> Any:
        return Job.type.in_(list(self.types))  # engines sharing a database keep to their types

    def reap(self, *, at_start: bool = False) -> int:
        """Take back jobs whose process died: run them again while attempts remain,
        else fail them (and tell the type); queue again lost never-started jobs if the
        queue is empty. Returns how many were taken back."""
        stamp = now()
        dead = or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < stamp)
        if at_start:
            earlier = and_(Job.lease_owner.startswith(self.node + "#", autoescape=True),
                           Job.lease_owner != self.owner)  # fmt: skip
            dead = or_(dead, earlier)
        started = and_(self._mine(), Job.state == PENDING, Job.started_at.is_not(None))
        with self.sessions() as session:
            candidates = session.execute(
                select(Job.id, Job.type, Job.attempts).where(started, dead)
            ).all()
        taken = 0
        for job_id, job_type, attempts in candidates:
            retry = attempts <= self.types[job_type].retries
            said = (
                f"attempt {attempts}: the process that ran this job stopped while it ran (it "
                "no longer renewed its lease)"
            )
            end: dict[str, Any] = {"error_log": said + "; running it again", "started_at": None}
            if not retry:
                again = "; run it again to retry (its arguments are kept)"
                end = {"state": FAILURE, "finished_at": stamp, "error_log": said + again}
            with self.sessions.begin() as session:
                # conditional, so two processes reaping at once take a job back once
                won = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.attempts == attempts, started, dead)
                    .values(**end, updated_at=stamp, lease_owner=None, lease_expires_at=None)
                ).rowcount
                job = session.get(Job, job_id)
            if not won or job is None:
                continue
            taken += 1
            self.log.warning("job taken back", job_id=job_id, retry=str(retry).lower())
            if retry:
                if not at_start:  # at start, recover() queues every waiting job
                    self._enqueue(job)
            else:
                hook = self.types[job.type].interrupted
                if hook is not None:
                    hook(job)
            self._changed(job)
        if not at_start:
            self._requeue_lost(stamp)
        return taken

    def _requeue_lost(self, stamp: Any) -> None:
        # a job is in the queue, being claimed, or lost; an empty queue rules out the
        # first, and the grace period the second
        if self.queue.pending_count() or self.queue.scheduled_count():
            return
        grace = stamp - timedelta(seconds=max(self.lease, 2.0))
        with self.sessions.begin() as session:
            lost = session.scalars(
                select(Job).where(
                    self._mine(),
                    Job.state == PENDING,
                    Job.started_at.is_(None),
                    Job.updated_at < grace,
                )
            ).all()
            for job in lost:
                job.updated_at = stamp
        for job in lost:
            self.log.warning("job queued again (not in the queue)", job_id=job.id)
            self._enqueue(job)


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


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]
