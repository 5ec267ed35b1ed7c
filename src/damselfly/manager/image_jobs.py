"""Image jobs: where an image's layers are cached, and deleting or preheating them.

The manifest URL is resolved through the registry once per job, by the worker, with
the job's credentials; the config and every layer become blob URLs, each a URL-based
task with the default filters, and each is looked up, deleted or preheated on its own,
side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from damselfly import ids
from damselfly.errors import DamselflyError, InvalidInput
from damselfly.jobs.engine import JobFailed, JobType, Progress
from damselfly.manager.schedulers import ClusterSchedulers
from damselfly.manager.secrets import SecretBox
from damselfly.manager.task_jobs import (
    check_credentials,
    origin_headers,
    peer_timeout,
    preheat_requests,
    preheat_urls,
)
from damselfly.source.http import HTTPSource
from damselfly.source.registry.client import RegistryClient
from damselfly.source.registry.manifests import Blob, Image, Platform
from damselfly.source.registry.reference import ManifestURL

_SIDE_BY_SIDE = 8  # layers asked about at once, per cluster


def manifest_url_of(args: Mapping[str, Any]) -> str:
    """The image manifest URL a job names: `image_manifest_url` (delete) or `url`."""
    url = args.get("image_manifest_url") or args.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidInput("url (the image manifest URL) is required")
    if len(url) > 1000:
        raise InvalidInput("the image manifest URL must be at most 1000 characters")
    return url


def _layer_task_id(blob: Blob, args: Mapping[str, Any]) -> str:
    return ids.task_id(
        ids.TaskIdentity(
            url=blob.url,
            tag=args.get("tag") or "",
            application=args.get("application") or "",
            piece_length=args.get("piece_length"),
        )
    )


def _image_summary(image: Image, args: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": image.url,
        "digest": image.digest,
        "media_type": image.media_type,
        "platform": image.platform,
        "size": image.size,
        "layers": [
            {
                "url": b.url,
                "digest": b.digest,
                "size": b.size,
                "media_type": b.media_type,
                "task_id": _layer_task_id(b, args),
            }
            for b in image.blobs
        ],
    }


class ImageJobs:
    """get_image_distribution, and delete_task / preheat given an image manifest URL."""

    def __init__(
        self,
        schedulers: ClusterSchedulers,
        box: SecretBox,
        registry_source: Callable[[], HTTPSource],
    ) -> None:
        self.schedulers = schedulers
        self.box = box
        self.registry_source = registry_source

    def types(self) -> dict[str, JobType]:
        return {
            "get_image_distribution": JobType(
                self.distribution, timeout=120, priority=10, retries=2
            ),
        }

    def validate(self, args: Mapping[str, Any]) -> None:
        ManifestURL.parse(manifest_url_of(args))
        platform = args.get("platform")
        if platform is not None:
            if not isinstance(platform, str):
                raise InvalidInput("platform must be a string like linux/amd64")
            if platform:
                Platform.parse(platform)
        check_credentials(args)
        headers = args.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise InvalidInput("headers must be an object of strings")

    def resolve(self, args: Mapping[str, Any]) -> Image:
        """The job's image; a registry error fails the job with the registry's reason."""
        platform = args.get("platform")
        source = self.registry_source()
        try:
            return RegistryClient(source).resolve(
                manifest_url_of(args),
                platform=Platform.parse(platform) if platform else None,
                headers=origin_headers(args),
            )
        except DamselflyError as exc:
            raise JobFailed(f"{exc.code}: {exc}") from exc
        finally:
            source.close()

    def _per_layer(self, image: Image, work: Callable[[Blob], Any]) -> list[tuple[Blob, Any]]:
        with ThreadPoolExecutor(max_workers=min(_SIDE_BY_SIDE, len(image.blobs))) as pool:
            return list(zip(image.blobs, pool.map(work, image.blobs), strict=True))

    def distribution(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        """Which peers (seed peers left out) cache which layers, and what share that is."""
        args = self.box.open(dict(args))
        image = self.resolve(args)
        progress(10)
        task_ids = {b.digest: _layer_task_id(b, args) for b in image.blobs}

        def ask(base: str) -> dict[str, Any]:
            per_layer = self._per_layer(
                image, lambda b: self.schedulers.holders(base, task_ids[b.digest])
            )
            peers: dict[str, dict[str, Any]] = {}
            for blob, holders in per_layer:
                for holder in holders:
                    if holder["host_type"] == "super":
                        continue
                    peer = peers.setdefault(
                        holder["id"],
                        {
                            "id": holder["id"],
                            "hostname": holder["hostname"],
                            "ip": holder["ip"],
                            "host_type": holder["host_type"],
                            "cached_layers": [],
                            "cached_bytes": 0,
                        },
                    )
                    peer["cached_layers"].append({"url": blob.url, "digest": blob.digest})
                    peer["cached_bytes"] += blob.size
            for peer in peers.values():
                peer["percentage"] = round(100 * len(peer["cached_layers"]) / len(image.blobs), 1)
                peer["size_percentage"] = round(100 * peer["cached_bytes"] / max(1, image.size), 1)
            ordered = sorted(peers.values(), key=lambda p: (-p["percentage"], p["hostname"]))
            return {"peers": ordered}

        clusters, errors = self.schedulers.fan_out(cluster_ids, ask, progress)
        result = {
            "image": _image_summary(image, args),
            "peers": [
                {**peer, "scheduler_cluster_id": c["scheduler_cluster_id"]}
                for c in clusters
                for peer in c["peers"]
            ],
        }
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result

    def delete(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        """Every layer's task from every peer, reported per layer and per host."""
        args = self.box.open(dict(args))
        timeout = peer_timeout(args)
        image = self.resolve(args)
        progress(10)
        task_ids = {b.digest: _layer_task_id(b, args) for b in image.blobs}

        def ask(base: str) -> dict[str, Any]:
            per_layer = self._per_layer(
                image, lambda b: self.schedulers.delete_on(base, task_ids[b.digest], timeout)
            )
            layers, successes, failures = [], [], []
            for blob, answer in per_layer:
                where = {"url": blob.url, "task_id": task_ids[blob.digest]}
                layers.append({**where, "digest": blob.digest, **answer})
                successes += [{**host, **where} for host in answer["success_tasks"]]
                failures += [{**host, **where} for host in answer["failure_tasks"]]
            return {"layers": layers, "success_tasks": successes, "failure_tasks": failures}

        clusters, errors = self.schedulers.fan_out(cluster_ids, ask, progress)
        result = {"image": _image_summary(image, args), "clusters": clusters}
        if errors:
            raise JobFailed("\n".join(errors), result)
        return result

    def preheat(
        self, args: Mapping[str, Any], cluster_ids: list[int], progress: Progress
    ) -> dict[str, Any]:
        """Every blob of the image onto the scope's peers (args already opened)."""
        image = self.resolve(args)
        progress(10)
        requests = preheat_requests(args, urls=[b.url for b in image.blobs])
        summary = _image_summary(image, args)
        try:
            result = preheat_urls(self.schedulers, args, requests, cluster_ids, progress)
        except JobFailed as exc:
            raise JobFailed(str(exc), {"image": summary, **(exc.result or {})}) from exc
        return {"image": summary, **result}
