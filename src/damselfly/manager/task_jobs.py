"""The task-cache jobs, Dragonfly-shaped: get_task and delete_task.

Each fans out to one scheduler of every chosen cluster; the scheduler asks (or
tells) every peer holding the task at once. Arguments are checked when the job is
created, so a bad request is a 422 and never a failed job.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from damselfly import ids
from damselfly.errors import InvalidInput
from damselfly.jobs.engine import JobFailed, JobType, Progress
from damselfly.manager.models import Scheduler, SchedulerCluster
from damselfly.manager.secrets import SecretBox
from damselfly.pieces import MAX_PIECE_LENGTH, MIN_PIECE_LENGTH

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = "task_id, content_for_calculating_task_id or url is required"


def task_id_from_args(args: Mapping[str, Any]) -> str:
    """Validate get_task / delete_task args as upstream does; the task ID they name."""
    task_id = args.get("task_id")
    url = args.get("url")
    content = args.get("content_for_calculating_task_id")
    if not (task_id or url or content):
        raise InvalidInput(_REQUIRED)
    for key in ("tag", "application"):
        value = args.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 400):
            raise InvalidInput(f"{key} must be a string of at most 400 characters")
    piece_length = args.get("piece_length")
    if piece_length is not None:
        if isinstance(piece_length, bool) or not isinstance(piece_length, int):
            raise InvalidInput("piece_length must be an integer number of bytes")
        if not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH:
            raise InvalidInput("piece_length must be within 4 MiB and 64 MiB")
    if task_id:
        if not isinstance(task_id, str) or not _HEX64.match(task_id):
            raise InvalidInput("task_id must be 64 lowercase hex characters")
        return task_id
    if content:
        return ids.content_task_id(str(content))
    if (
        not isinstance(url, str)
        or len(url) > 1000
        or not url.startswith(("http://", "https://", "ftp://"))
    ):
        raise InvalidInput("url must be an http(s) or ftp URL of at most 1000 characters")
    filters = args.get("filtered_query_params")
    if filters is not None and not isinstance(filters, str):
        raise InvalidInput("filtered_query_params must be one string of keys joined by &")
    return ids.task_id(
        ids.TaskIdentity(
            url=url,
            tag=args.get("tag") or "",
            application=args.get("application") or "",
            piece_length=piece_length,
            filtered_query_params=[f for f in filters.split("&") if f] if filters else None,
        )
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def peer_timeout(args: Mapping[str, Any]) -> float:
    value = args.get("timeout", 5)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
        raise InvalidInput("timeout must be a number of seconds within (0, 300]")
    return float(value)


_SCOPES = ("single_seed_peer", "all_seed_peers", "all_peers")


def preheat_requests(args: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validate preheat args; one download request per URL."""
    kind = args.get("type", "file")
    if kind == "image":
        raise InvalidInput("preheat of type image is not supported yet; use type file")
    if kind != "file":
        raise InvalidInput("preheat type must be file or image")
    if args.get("scope", "single_seed_peer") not in _SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(_SCOPES)}")
    headers = args.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(v, str | dict) for v in headers.values()
    ):
        raise InvalidInput("headers must be an object of strings")
    if bool(args.get("username")) != bool(args.get("password")):
        raise InvalidInput("username and password go together")
    urls = args.get("urls") or ([args["url"]] if args.get("url") else [])
    if not urls or not isinstance(urls, list):
        raise InvalidInput("url or urls is required")
    requests = []
    for url in urls:
        task_id_from_args({**args, "url": url, "task_id": None, "urls": None})
        filters = args.get("filtered_query_params")
        requests.append(
            {
                "url": url,
                "tag": args.get("tag") or "",
                "application": args.get("application") or "",
                "piece_length": args.get("piece_length"),
                "filtered_query_params": [f for f in filters.split("&") if f] if filters else None,
                "headers": _origin_headers(args),
            }
        )
    return requests


def _origin_headers(args: Mapping[str, Any]) -> dict[str, Any]:
    """User headers, plus Basic auth from username/password (for file preheat)."""
    headers = dict(args.get("headers") or {})
    username, password = args.get("username"), args.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


class TaskJobs:
    """get_task and delete_task over the schedulers registered in the database."""

    def __init__(
        self, sessions: sessionmaker[Session], http: urllib3.PoolManager, box: SecretBox
    ) -> None:
        self.sessions = sessions
        self.http = http
        self.box = box

    def types(self) -> dict[str, JobType]:
        return {
            "get_task": JobType(self.get_task, timeout=60, priority=10, retries=2),
            "delete_task": JobType(self.delete_task, timeout=330, priority=5, retries=1),
            "preheat": JobType(self.preheat, timeout=3600, priority=0, retries=1),
        }

    def validate(self, type_: str, args: Mapping[str, Any]) -> None:
        if type_ in ("get_task", "delete_task"):
            task_id_from_args(args)
            peer_timeout(args)
        elif type_ == "preheat":
            preheat_requests(args)

    def _clusters(self, cluster_ids: list[int]) -> list[tuple[int, list[str]]]:
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

    def _call(self, method: str, url: str, timeout: float) -> tuple[int, Any]:
        resp = self.http.request(method, url, timeout=urllib3.Timeout(connect=3, read=timeout))
        try:
            body = json.loads(resp.data) if resp.data else None
        except json.JSONDecodeError:
            body = {"message": resp.data[:200].decode(errors="replace")}
        return resp.status, body

    def _fan_out(
        self, cluster_ids: list[int], ask: Any, progress: Progress
    ) -> tuple[list[dict[str, Any]], list[str]]:
        results, errors = [], []
        clusters = self._clusters(cluster_ids)
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

    def get_task(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        task_id = task_id_from_args(args)

        def ask(base: str) -> dict[str, Any]:
            status, body = self._call("GET", f"{base}/api/v1/tasks/{task_id}", 10)
            if status == 404:
                return {"peers": []}
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body}")
            return {
                "peers": [
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
            }

        results, errors = self._fan_out(cluster_ids, ask, progress)
        result = {"task_id": task_id, "clusters": results}
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result

    def delete_task(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        task_id = task_id_from_args(args)
        timeout = peer_timeout(args)

        def ask(base: str) -> dict[str, Any]:
            url = f"{base}/api/v1/tasks/{task_id}/delete?timeout={timeout:g}"
            status, body = self._call("POST", url, timeout + 10)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body}")
            return body

        results, errors = self._fan_out(cluster_ids, ask, progress)
        result = {"task_id": task_id, "clusters": results}
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result

    def preheat(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        """Every URL on the scope's peers of every cluster; FAILURE if any host failed."""
        args = self.box.open(dict(args))  # credentials, sealed in the row, opened here only
        scope = args.get("scope", "single_seed_peer")
        timeout = float(args.get("timeout") or 600)
        requests = preheat_requests(args)

        def ask(base: str) -> dict[str, Any]:
            tasks = []
            for wanted in requests:
                body = json.dumps({"request": wanted, "scope": scope, "timeout": timeout})
                resp = self.http.request(
                    "POST",
                    f"{base}/api/v1/preheat",
                    body=body.encode(),
                    headers={"Content-Type": "application/json"},
                    timeout=urllib3.Timeout(connect=3, read=timeout + 30),
                )
                answer = json.loads(resp.data) if resp.data else {}
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {answer.get('message', answer)}")
                tasks.append({"url": wanted["url"], "hosts": answer["hosts"]})
            return {"tasks": tasks}

        results, errors = self._fan_out(cluster_ids, ask, progress)
        for cluster in results:
            for task in cluster["tasks"]:
                errors += [
                    f"{h['hostname']} ({h['ip']}) could not preheat {task['url']}: "
                    f"{h['description']}"
                    for h in task["hosts"]
                    if h["state"] != "succeeded"
                ]
        result = {"clusters": results}
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result
