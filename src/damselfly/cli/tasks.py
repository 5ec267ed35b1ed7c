"""`damselfly task search|delete`: where a task is cached, and removing it everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from damselfly.cli.image_results import print_distribution, print_image_delete
from damselfly.cli.job_options import (
    DataDirOpt,
    ImageOpt,
    ManagerOpt,
    PasswordOpt,
    PlatformOpt,
    TokenOpt,
    UsernameOpt,
    credentials,
    manager_client,
    run_job,
)
from damselfly.errors import DamselflyError, InvalidInput
from damselfly.units import parse_size

app = typer.Typer(help="Search and delete cached tasks (through the manager's jobs).")

# how a task is named, the same for search and delete
UrlOpt = typer.Option(None, "--url", help="The task's URL.")
TaskIdOpt = typer.Option(None, "--task-id", help="The task ID (64 hex).")
ContentOpt = typer.Option(None, "--content", help="Content for calculating the task ID.")
TagOpt = typer.Option("", "--tag")
ApplicationOpt = typer.Option("", "--application")
PieceLengthOpt = typer.Option(None, "--piece-length", help="e.g. 8MiB.")
FiltersOpt = typer.Option(None, "--filtered-query-param", help="Repeatable.")


def _args(
    url: str | None,
    task_id: str | None,
    content: str | None,
    tag: str,
    application: str,
    piece_length: str | None,
    filters: list[str] | None,
    image: str | None = None,
) -> dict[str, Any]:
    given = [x for x in (url, task_id, content, image) if x]
    if len(given) != 1:
        raise InvalidInput(
            "give exactly one of --url, --task-id, --content or --image-manifest-url"
        )
    args: dict[str, Any] = {}
    if image:
        return args
    if url:
        args["url"] = url
        if tag:
            args["tag"] = tag
        if application:
            args["application"] = application
        if piece_length:
            args["piece_length"] = parse_size(piece_length)
        if filters:
            args["filtered_query_params"] = "&".join(filters)
    elif task_id:
        args["task_id"] = task_id
    else:
        args["content_for_calculating_task_id"] = content
    return args


@app.command("search")
def search(
    url: str | None = UrlOpt,
    task_id: str | None = TaskIdOpt,
    content: str | None = ContentOpt,
    tag: str = TagOpt,
    application: str = ApplicationOpt,
    piece_length: str | None = PieceLengthOpt,
    filtered_query_param: list[str] | None = FiltersOpt,
    image_manifest_url: str | None = ImageOpt,
    platform: str | None = PlatformOpt,
    username: str | None = UsernameOpt,
    password: str | None = PasswordOpt,
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Which peers hold a task (per scheduler cluster), or an image's layers."""
    args = _args(
        url, task_id, content, tag, application, piece_length, filtered_query_param,
        image_manifest_url,
    )  # fmt: skip
    client = manager_client(manager, token, data_dir)
    console = Console()
    if image_manifest_url:
        image_args = {"url": image_manifest_url, **credentials(username, password)}
        if platform:
            image_args["platform"] = platform
        job = run_job(client, "get_image_distribution", image_args, console)
        print_distribution(job, console)
        return
    job = run_job(client, "get_task", args, console)
    result = job.get("result") or {}
    console.print(f"task [bold]{result.get('task_id', '?')}[/bold]  (job {job['id']})")
    found = False
    for cluster in result.get("clusters", []):
        if not cluster["peers"]:
            continue
        found = True
        table = Table(title=f"scheduler cluster {cluster['scheduler_cluster_id']}")
        for column in ("Hostname", "ID", "IP", "Host type", "Created at"):
            table.add_column(column)
        for peer in cluster["peers"]:
            table.add_row(
                peer["hostname"], peer["id"], peer["ip"], peer["host_type"], str(peer["created_at"])
            )
        console.print(table)
    if not found:
        console.print("no peer holds this task")
    if job["state"] == "FAILURE":
        raise DamselflyError(f"job {job['id']} failed: {job['error_log']}")


@app.command("delete")
def delete(
    url: str | None = UrlOpt,
    task_id: str | None = TaskIdOpt,
    content: str | None = ContentOpt,
    tag: str = TagOpt,
    application: str = ApplicationOpt,
    piece_length: str | None = PieceLengthOpt,
    filtered_query_param: list[str] | None = FiltersOpt,
    image_manifest_url: str | None = ImageOpt,
    platform: str | None = PlatformOpt,
    username: str | None = UsernameOpt,
    password: str | None = PasswordOpt,
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for each peer."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask to type DELETE."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Delete a task (or every layer of an image) from every peer that holds it."""
    args = _args(
        url, task_id, content, tag, application, piece_length, filtered_query_param,
        image_manifest_url,
    )  # fmt: skip
    args["timeout"] = timeout
    if image_manifest_url:
        args.update(image_manifest_url=image_manifest_url, **credentials(username, password))
        if platform:
            args["platform"] = platform
    what = "every layer of the image" if image_manifest_url else "the task"
    if not yes:
        answer = typer.prompt(f"This deletes {what} from every peer. Type DELETE to go on")
        if answer != "DELETE":
            raise DamselflyError("not deleted (you did not type DELETE)")
    client = manager_client(manager, token, data_dir)
    console = Console()
    job = run_job(client, "delete_task", args, console)
    if image_manifest_url:
        print_image_delete(job, console)
        return
    result = job.get("result") or {}
    failures = 0
    for cluster in result.get("clusters", []):
        table = Table(title=f"scheduler cluster {cluster['scheduler_cluster_id']}")
        for column in ("Hostname", "IP", "Host type", "Result"):
            table.add_column(column)
        for entry in cluster["success_tasks"]:
            table.add_row(entry["hostname"], entry["ip"], entry["host_type"], "deleted")
        for entry in cluster["failure_tasks"]:
            failures += 1
            table.add_row(entry["hostname"], entry["ip"], entry["host_type"], entry["description"])
        console.print(table)
    if job["state"] == "FAILURE":
        raise DamselflyError(f"job {job['id']} failed: {job['error_log']}")
    if failures:
        raise DamselflyError(
            f"job {job['id']}: {failures} peer(s) could not delete the task (see the table)"
        )
    console.print(f"deleted everywhere (job {job['id']})")
