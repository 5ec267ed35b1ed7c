"""The task-cache jobs, Dragonfly-shaped: get_task, delete_task and preheat.

Each fans out to one scheduler of every chosen cluster; the scheduler asks (or
tells) every peer holding the task at once. Arguments are checked when the job is
created, so a bad request is a 422 and never a failed job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from damselfly import ids
from damselfly.errors import InvalidInput
from damselfly.jobs.engine import JobFailed, JobType, Progress
from damselfly.manager.schedulers import ClusterSchedulers
from damselfly.manager.secrets import SecretBox
from damselfly.pieces import MAX_PIECE_LENGTH, MIN_PIECE_LENGTH
from damselfly.source.registry.client import registry_headers

if TYPE_CHECKING:
    from damselfly.manager.image_jobs import ImageJobs

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


def peer_timeout(args: Mapping[str, Any]) -> float:
    value = args.get("timeout", 5)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
        raise InvalidInput("timeout must be a number of seconds within (0, 300]")
    return float(value)


_SCOPES = ("single_seed_peer", "all_seed_peers", "all_peers")


def check_preheat(args: Mapping[str, Any]) -> None:
    """Validate what every preheat shares: type, scope, headers and credentials."""
    if args.get("type", "file") not in ("file", "image"):
        raise InvalidInput("preheat type must be file or image")
    if args.get("scope", "single_seed_peer") not in _SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(_SCOPES)}")
    headers = args.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(v, str | dict) for v in headers.values()
    ):
        raise InvalidInput("headers must be an object of strings")
    check_credentials(args)
    timeout = args.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise InvalidInput("timeout must be a positive number of seconds")


def check_credentials(args: Mapping[str, Any]) -> None:
    username, password = args.get("username"), args.get("password")
    if bool(username) != bool(password):
        raise InvalidInput("username and password go together")
    if username is not None and not isinstance(username, str):
        raise InvalidInput("username must be a string")


def preheat_requests(args: Mapping[str, Any], urls: list[str] | None = None) -> list[dict]:
    """Validate preheat args; one download request per URL (`urls` overrides the args')."""
    check_preheat(args)
    if urls is None:
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
                "headers": origin_headers(args),
            }
        )
    return requests


def origin_headers(args: Mapping[str, Any]) -> dict[str, Any]:
    """User headers, plus Basic auth from username/password. Registries with a token
    realm get the same Basic header: the peer's HTTP source trades it for a token."""
    return registry_headers(args.get("headers"), args.get("username"), args.get("password"))


class TaskJobs:
    """get_task, delete_task and preheat over the schedulers registered in the database.

    A delete_task naming an image manifest URL, and a preheat of type image, go to
    `images`, which resolves the image and runs the same operations per layer.
    """

    def __init__(self, schedulers: ClusterSchedulers, box: SecretBox, images: ImageJobs) -> None:
        self.schedulers = schedulers
        self.box = box
        self.images = images

    def types(self) -> dict[str, JobType]:
        return {
            "get_task": JobType(self.get_task, timeout=60, priority=10, retries=2),
            "delete_task": JobType(self.delete_task, timeout=330, priority=5, retries=1),
            "preheat": JobType(self.preheat, timeout=3600, priority=0, retries=1),
            **self.images.types(),
        }

    def validate(self, type_: str, args: Mapping[str, Any]) -> None:
        if type_ == "delete_task" and args.get("image_manifest_url"):
            self.images.validate(args)
            peer_timeout(args)
        elif type_ in ("get_task", "delete_task"):
            task_id_from_args(args)
            peer_timeout(args)
        elif type_ == "preheat" and args.get("type") == "image":
            check_preheat(args)
            self.images.validate(args)
        elif type_ == "preheat":
            preheat_requests(args)
        elif type_ in self.images.types():
            self.images.validate(args)

    def get_task(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        task_id = task_id_from_args(args)
        results, errors = self.schedulers.fan_out(
            cluster_ids, lambda base: {"peers": self.schedulers.holders(base, task_id)}, progress
        )
        result = {"task_id": task_id, "clusters": results}
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result

    def delete_task(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        if args.get("image_manifest_url"):
            return self.images.delete(args, cluster_ids, progress)
        task_id = task_id_from_args(args)
        timeout = peer_timeout(args)
        results, errors = self.schedulers.fan_out(
            cluster_ids, lambda base: self.schedulers.delete_on(base, task_id, timeout), progress
        )
        result = {"task_id": task_id, "clusters": results}
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result

    def preheat(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        """Every URL on the scope's peers of every cluster; FAILURE if any host failed."""
        args = self.box.open(dict(args))  # credentials, sealed in the row, opened here only
        if args.get("type") == "image":
            return self.images.preheat(args, cluster_ids, progress)
        return preheat_urls(self.schedulers, args, preheat_requests(args), cluster_ids, progress)


def preheat_urls(
    schedulers: ClusterSchedulers,
    args: Mapping[str, Any],
    requests: list[dict[str, Any]],
    cluster_ids: list[int],
    progress: Progress,
) -> dict[str, Any]:
    """Each request on the scope's peers of every cluster; FAILURE if any host failed."""
    scope = args.get("scope", "single_seed_peer")
    timeout = float(args.get("timeout") or 600)

    def ask(base: str) -> dict[str, Any]:
        # every URL at once: an image's layers are fetched side by side
        with ThreadPoolExecutor(max_workers=min(8, len(requests))) as pool:
            hosts = pool.map(lambda r: schedulers.preheat_on(base, r, scope, timeout), requests)
            return {
                "tasks": [
                    {"url": r["url"], "hosts": h} for r, h in zip(requests, hosts, strict=True)
                ]
            }

    results, errors = schedulers.fan_out(cluster_ids, ask, progress)
    for cluster in results:
        for task in cluster["tasks"]:
            errors += [
                f"{h['hostname']} ({h['ip']}) could not preheat {task['url']}: {h['description']}"
                for h in task["hosts"]
                if h["state"] != "succeeded"
            ]
    result = {"clusters": results}
    if errors:
        raise JobFailed("\n".join(errors), result)
    return result
