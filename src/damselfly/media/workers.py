"""Starting media processing: its job engine and queue, the service, and the workers.

Media tasks have their own queue (`damselfly-media`), so a long transcode never holds
up a delete_task, and their own worker count (half the cores by default).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from damselfly.jobs.engine import JobEngine
from damselfly.jobs.node import Node, claim_node
from damselfly.jobs.queue import EmbeddedConsumer, make_queue, start_consumer
from damselfly.logs import EventLog
from damselfly.media.notify import Notifier
from damselfly.media.service import MediaService
from damselfly.media.work.runner import MediaRunner
from damselfly.media.workflows import Watcher, Workflows
from damselfly.netpolicy import policy_of
from damselfly.settings import MediaSettings


@dataclass
class MediaWorkers:
    service: MediaService
    engine: JobEngine
    consumer: EmbeddedConsumer | None
    stop: threading.Event
    recovered: tuple[int, int]
    workflows: Workflows
    watcher: Watcher | None
    notifier: Notifier
    node: Node

    def close(self) -> None:
        """Cancel running tasks at their next frame (they go back to the queue), then stop."""
        self.stop.set()
        if self.watcher is not None:
            self.watcher.stop()
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
        self.notifier.close()
        self.engine.close()
        self.node.release()


def start_media(
    sessions: sessionmaker[Session],
    settings: MediaSettings,
    *,
    redis_url: str | None,
    queue_dir: Path,
    log: EventLog,
    watch: bool = True,
) -> MediaWorkers:
    """The media engine, service and workers; `watch` also runs the workflow watcher."""
    queue = make_queue("damselfly-media", redis_url=redis_url, data_dir=queue_dir)
    node = claim_node(queue_dir, "media")
    engine = JobEngine(sessions, queue, {}, log, node=node.name, lease=settings.job_lease)
    service = MediaService(sessions, engine, settings)
    stop = threading.Event()
    engine.types.update(MediaRunner(sessions, service, settings, log, stop).job_types())
    for root in (*settings.output_roots, settings.uploads):
        root.mkdir(parents=True, exist_ok=True)
    # every process takes back expired leases; one with workers also takes back its own
    # earlier incarnation's tasks at once and re-queues what was never started
    recovered = engine.recover() if settings.workers else (0, 0)
    engine.start_keeper()
    notifier = Notifier(settings.webhook_key, log, service.webhook_key, policy_of(settings))
    service.subscribe(notifier.on_change)
    workflows = Workflows(sessions, service)
    watcher = Watcher(workflows, log).start() if watch else None
    consumer = start_consumer(queue, settings.workers, log) if settings.workers else None
    return MediaWorkers(
        service, engine, consumer, stop, recovered, workflows, watcher, notifier, node
    )
