"""A job engine in its own process, for tests that kill it: `python -m
tests.support.job_runner DATA_DIR LEASE_SECONDS`. Job type `block` runs until killed;
`quick` returns at once; `resume` (one retry) blocks on its first attempt only."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from damselfly.jobs.engine import JobEngine, JobType
from damselfly.jobs.node import claim_node
from damselfly.jobs.queue import make_queue, start_consumer
from damselfly.logs import EventLog
from damselfly.manager.db import make_engine, sessions, sqlite_url


def types(started: threading.Event | None = None, marks: Path | None = None) -> dict[str, JobType]:
    def block(args, clusters, progress):
        if started is not None:
            started.set()
        print("running", args.get("n"), flush=True)
        threading.Event().wait(600)
        return {}

    def resume(args, clusters, progress):
        mark = (marks or Path(".")) / f"resume-{args['n']}"
        if mark.exists():
            return {"resumed": True}
        mark.touch()
        return block(args, clusters, progress)

    return {
        "block": JobType(block),
        "quick": JobType(lambda a, c, p: {"ran": True}),
        "resume": JobType(resume, retries=1),
    }


def main() -> None:
    data_dir, lease = Path(sys.argv[1]), float(sys.argv[2])
    db = make_engine(sqlite_url(data_dir))
    queue = make_queue("test", redis_url=None, data_dir=data_dir)
    node = claim_node(data_dir, "runner")
    engine = JobEngine(
        sessions(db), queue, types(marks=data_dir), EventLog(data_dir / "logs", "runner"),
        node=node.name, lease=lease,
    )  # fmt: skip
    engine.recover()
    engine.start_keeper()
    start_consumer(queue, 2)
    print("ready", node.name, flush=True)
    threading.Event().wait(600)


if __name__ == "__main__":
    main()
