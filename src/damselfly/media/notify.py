"""Webhooks: a task's detail POSTed to its notify URL when it finishes (mode `finish`)
or whenever its status or a subtask's status changes (mode `change`).

Signed as the reference describes: `X-Damselfly-Timestamp: <unix seconds>` and
`X-Damselfly-Signature: md5(timestamp + key)` (the task's key, else the server's).
Delivery is retried three times with backoff; a receiver that is down never slows a
worker, since sending happens on the notifier's own threads. A task's calls arrive in
the order its changes happened.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from damselfly.errors import OutboundDenied
from damselfly.logs import EventLog
from damselfly.netpolicy import OutboundPolicy, pool_manager

_BACKOFF = (0.5, 2.0, 5.0)
_LANES = 4


def signature(timestamp: str, key: str) -> str:
    return hashlib.md5((timestamp + key).encode()).hexdigest()


class Notifier:
    def __init__(
        self, default_key: str, log: EventLog, keys: Any, policy: OutboundPolicy | None = None
    ) -> None:
        """`keys(task_id)` gives the task's own webhook key (views show it masked)."""
        self.default_key = default_key
        self.keys = keys
        self.log = log
        # one thread per lane and a task always on the same lane: its calls arrive in order
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="damselfly-webhook")
            for _ in range(_LANES)
        ]
        self._http = pool_manager(policy or OutboundPolicy(), maxsize=2, retries=False)
        self._last: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def on_change(self, view: dict[str, Any]) -> None:
        notify = (view.get("request") or {}).get("notify")
        if not notify:
            return
        state = (view["status"], view["run"], tuple(s["status"] for s in view["subtasks"]))
        event = "task_finished" if view["status"] == "FINISH" else "task_changed"
        lane = self._lanes[zlib.crc32(view["task_id"].encode()) % _LANES]
        with self._lock:  # decided and queued together: the lane keeps this order
            if self._last.get(view["task_id"]) == state:
                return  # a progress tick: not a change worth a call
            self._last[view["task_id"]] = state
            if view["status"] == "FINISH":
                self._last.pop(view["task_id"], None)
            if notify["mode"] == "change" or view["status"] == "FINISH":
                lane.submit(self._send, notify, event, view)

    def _send(self, notify: dict[str, Any], event: str, view: dict[str, Any]) -> None:
        body = json.dumps({"event": event, "task": view}).encode()
        for attempt, delay in enumerate((0.0, *_BACKOFF)):
            time.sleep(delay)
            stamp = str(int(time.time()))
            key = self.keys(view["task_id"]) or self.default_key
            try:
                resp = self._http.request(
                    "POST", notify["url"], body=body, timeout=urllib3.Timeout(connect=3, read=5),
                    headers={"Content-Type": "application/json", "X-Damselfly-Timestamp": stamp,
                             "X-Damselfly-Signature": signature(stamp, key),
                             "X-Damselfly-Event": event},
                )  # fmt: skip
                if resp.status < 300:
                    return
                why = f"HTTP {resp.status}"
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                why = str(exc)
            except OutboundDenied as exc:  # no retry changes a policy
                self.log.error("webhook refused", task_id=view["task_id"], url=notify["url"],
                               error=str(exc))  # fmt: skip
                return
            self.log.warning("webhook not delivered", task_id=view["task_id"], url=notify["url"],
                             attempt=attempt + 1, error=why)  # fmt: skip
        self.log.error("webhook given up", task_id=view["task_id"], url=notify["url"])

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=False, cancel_futures=True)
