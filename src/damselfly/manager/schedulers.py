"""Reaching the schedulers of the chosen clusters: one answers for each cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import urllib3
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from damselfly.jobs.engine import JobFailed, Progress
from damselfly.manager.models import Scheduler, SchedulerCluster

Ask = Callable[[str], dict[str, Any]]


class ClusterSchedulers:
    """The active schedulers the database knows, and calls to them."""

    def __init__(self, sessions: sessionmaker[Session], http: urllib3.PoolManager) -> None:
        self.sessions = sessions
        self.http = http

    def clusters(self, cluster_ids: list[int]) -> list[tuple[int, list[str]]]:
        """(cluster ID, its active schedulers' URLs) for the chosen or all clusters."""
        with self.sessions() as session:
            query = select(SchedulerCluster.id).order_by(SchedulerCluster.id)
            if cluster_ids:
                query = query.where(SchedulerCluster.id.in_(cluster_ids))
            clusters = list(session.scalars(query))
            result = []
            for cluster_id in clusters:
                schedulers = session.scalars(
                    select(Scheduler).where(
                        Scheduler.cluster_id == cluster_id, Scheduler.state == "active"
                    )
                )
                result.append((cluster_id, [f"http://{s.ip}:{s.port}" for s in schedulers]))
        missing = set(cluster_ids) - {c for c, _ in result}
        if missing:
            raise JobFailed(f"scheduler clusters {sorted(missing)} do not exist")
        return result

    def call(self, method: str, url: str, timeout: float, body: Any = None) -> tuple[int, Any]:
        """(status, JSON answer) of one scheduler API call."""
        resp = self.http.request(
            method,
            url,
            body=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else None,
            timeout=urllib3.Timeout(connect=3, read=timeout),
        )
        try:
            answer = json.loads(resp.data) if resp.data else None
        except json.JSONDecodeError:
            answer = {"message": resp.data[:200].decode(errors="replace")}
        return resp.status, answer

    # one scheduler's answer about one task: what every task and image job is made of
    def holders(self, base: str, task_id: str) -> list[dict[str, Any]]:
        """The peers that finished `task_id`, as the job results show them."""
        status, body = self.call("GET", f"{base}/api/v1/tasks/{task_id}", 10)
        if status == 404:
            return []
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body}")
        return [
            {
                "id": p["host_id"],
                "hostname": p["hostname"],
                "ip": p["ip"],
                "host_type": p["host_type"],
                "created_at": _iso(p["created_at"]),
                "updated_at": _iso(p["updated_at"]),
            }
            for p in body["peers"]
            if p["state"] == "succeeded"
        ]

    def delete_on(self, base: str, task_id: str, timeout: float) -> dict[str, Any]:
        """{success_tasks, failure_tasks} of deleting `task_id` from every holder."""
        url = f"{base}/api/v1/tasks/{task_id}/delete?timeout={timeout:g}"
        status, body = self.call("POST", url, timeout + 10)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body}")
        return body

    def preheat_on(
        self, base: str, request: dict[str, Any], scope: str, timeout: float
    ) -> list[dict[str, Any]]:
        """The hosts of `scope` that were told to fetch `request`, with their outcome."""
        status, answer = self.call(
            "POST",
            f"{base}/api/v1/preheat",
            timeout + 30,
            {"request": request, "scope": scope, "timeout": timeout},
        )
        if status != 200:
            message = answer.get("message", answer) if isinstance(answer, dict) else answer
            raise RuntimeError(f"HTTP {status}: {message}")
        return answer["hosts"]

    def fan_out(
        self, cluster_ids: list[int], ask: Ask, progress: Progress
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """`ask` one scheduler of each cluster: (per-cluster results, distinct errors)."""
        results, errors = [], []
        clusters = self.clusters(cluster_ids)
        for done, (cluster_id, schedulers) in enumerate(clusters):
            progress(100 * done // max(1, len(clusters)))
            if not schedulers:
                errors.append(f"scheduler cluster {cluster_id} has no active scheduler")
                continue
            last_error = ""
            for base in schedulers:  # the first that answers speaks for the cluster
                try:
                    results.append({"scheduler_cluster_id": cluster_id, **ask(base)})
                    break
                except (urllib3.exceptions.HTTPError, OSError, RuntimeError) as exc:
                    last_error = f"scheduler {base} of cluster {cluster_id} failed: {exc}"
            else:
                errors.append(last_error)
        return results, sorted(set(errors))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
