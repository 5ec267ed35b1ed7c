"""Changes other processes made, for this process's event streams.

Workers on other hosts (`damselfly worker`) change jobs and media tasks in the shared
database, and their in-process notifications never reach the manager's SSE clients.
While anyone listens, the feed looks once a second at the rows updated in the last
few seconds and passes on the versions not yet heard (see `jobs/listeners.py`).
The look-back window absorbs clocks a little apart across hosts.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from damselfly.database import utcnow
from damselfly.jobs.engine import JobEngine
from damselfly.jobs.models import Job
from damselfly.logs import EventLog
from damselfly.media.models import MediaTask
from damselfly.media.service import MediaService


class ChangeFeed:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        jobs: JobEngine,
        media: MediaService | None,
        log: EventLog,
        *,
        interval: float = 1.0,
        look_back: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.jobs = jobs
        self.media = media
        self.log = log
        self.interval = interval
        self.look_back = timedelta(seconds=look_back)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="damselfly-change-feed", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.look()
                self._failing = False
            except SQLAlchemyError as exc:  # the database is down: streams wait, no flood
                if not self._failing:
                    self.log.warning("change feed cannot read the database", error=str(exc))
                self._failing = True

    def look(self) -> None:
        """One look at the database; passes on what other processes changed."""
        want_media = self.media is not None and self.media.listeners.want_elsewhere()
        if not (self.jobs.listeners.want_elsewhere() or want_media):
            return
        since = utcnow() - self.look_back
        with self.sessions() as session:
            jobs = []
            if self.jobs.listeners.want_elsewhere():
                jobs = list(session.scalars(select(Job).where(Job.updated_at >= since)))
            tasks = []
            if want_media:
                tasks = list(
                    session.execute(
                        select(MediaTask.id, MediaTask.updated_at).where(
                            MediaTask.updated_at >= since
                        )
                    )
                )
        for job in jobs:
            self.jobs.changed_elsewhere(job)
        if self.media is not None:
            for task_id, stamp in tasks:
                self.media.changed_elsewhere(task_id, stamp)
