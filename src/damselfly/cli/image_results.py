"""How the CLI shows image jobs: distribution, per-layer deletes and preheats."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from damselfly.errors import DamselflyError
from damselfly.units import format_size


def _short(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}"


def _failed(job: dict[str, Any]) -> None:
    if job["state"] == "FAILURE":
        raise DamselflyError(f"job {job['id']} failed: {job['error_log']}")


def print_image(image: dict[str, Any], job: dict[str, Any], console: Console) -> None:
    platform = f"{image['platform']}, " if image.get("platform") else ""
    console.print(
        f"image [bold]{image['url']}[/bold] ({platform}{len(image['layers'])} blobs, "
        f"{format_size(image['size'])})  job {job['id']}"
    )


def print_distribution(job: dict[str, Any], console: Console) -> None:
    result = job.get("result") or {}
    image = result.get("image")
    if image is None:
        _failed(job)
        return
    print_image(image, job, console)
    peers = result.get("peers") or []
    if peers:
        table = Table()
        for column in ("Hostname", "IP", "Cluster", "Cached", "Layers"):
            table.add_column(column)
        for peer in peers:
            table.add_row(
                peer["hostname"],
                peer["ip"],
                str(peer["scheduler_cluster_id"]),
                f"{peer['percentage']:g}% ({len(peer['cached_layers'])}/{len(image['layers'])}, "
                f"{format_size(peer['cached_bytes'])})",
                "\n".join(_short(layer["digest"]) for layer in peer["cached_layers"]),
            )
        console.print(table)
    else:
        console.print("no peer caches any layer of this image")
    _failed(job)


def print_image_delete(job: dict[str, Any], console: Console) -> None:
    result = job.get("result") or {}
    image = result.get("image")
    if image is None:
        _failed(job)
        return
    print_image(image, job, console)
    failures = 0
    for cluster in result.get("clusters", []):
        table = Table(title=f"scheduler cluster {cluster['scheduler_cluster_id']}")
        for column in ("Layer", "Hostname", "IP", "Host type", "Result"):
            table.add_column(column)
        for layer in cluster["layers"]:
            for entry in layer["success_tasks"]:
                table.add_row(
                    _short(layer["digest"]), entry["hostname"], entry["ip"], entry["host_type"],
                    "deleted",
                )  # fmt: skip
            for entry in layer["failure_tasks"]:
                failures += 1
                table.add_row(
                    _short(layer["digest"]), entry["hostname"], entry["ip"], entry["host_type"],
                    entry["description"],
                )  # fmt: skip
        if table.row_count:
            console.print(table)
        else:
            console.print(f"cluster {cluster['scheduler_cluster_id']}: no peer held a layer")
    _failed(job)
    if failures:
        raise DamselflyError(
            f"job {job['id']}: {failures} layer deletion(s) failed on some peers (see the table)"
        )
    console.print(f"deleted every layer everywhere (job {job['id']})")


def print_preheat(job: dict[str, Any], console: Console) -> None:
    result = job.get("result") or {}
    if result.get("image"):
        print_image(result["image"], job, console)
    for cluster in result.get("clusters", []):
        table = Table(title=f"scheduler cluster {cluster['scheduler_cluster_id']}")
        for column in ("URL", "Hostname", "IP", "State", "Description"):
            table.add_column(column)
        for task in cluster["tasks"]:
            for host in task["hosts"]:
                table.add_row(
                    task["url"], host["hostname"], host["ip"], host["state"],
                    host.get("description") or "",
                )  # fmt: skip
        console.print(table)
    _failed(job)
    console.print(f"preheated (job {job['id']})")
