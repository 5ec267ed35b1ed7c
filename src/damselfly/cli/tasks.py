"""`damselfly task search|delete`: where a task is cached, and removing it everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from damselfly.cli.api_client import DEFAULT_MANAGER, ManagerClient, find_token
from damselfly.cli.options import default_data_dir
from damselfly.errors import DamselflyError, InvalidInput
from damselfly.units import parse_size

app = typer.Typer(help="Search and delete cached tasks (through the manager's jobs).")

ManagerOpt = typer.Option(DEFAULT_MANAGER, "--manager", help="Manager URL.")
TokenOpt = typer.Option(None, "--token", help="API token (default: $DAMSELFLY_TOKEN or root's).")
DataDirOpt = typer.Option(None, "--data-dir", help="Where a local manager keeps root's token.")
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
) -> dict[str, Any]:
    given = [x for x in (url, task_id, content) if x]
    if len(given) != 1:
        raise InvalidInput("give exactly one of --url, --task-id or --content")
    args: dict[str, Any] = {}
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


def _run_job(client: ManagerClient, type_: str, args: dict[str, Any], console: Console) -> dict:
    job = client.call("POST", "/api/v1/jobs", {"type": type_, "args": args})
    with console.status(f"job {job['id']} ({type_}) pending…") as status:
        job = client.wait_job(
            job,
            lambda j: status.update(f"job {j['id']} ({type_}) {j['state'].lower()}…"),
            timeout=600,
        )
    return job


@app.command("search")
def search(
    url: str | None = UrlOpt,
    task_id: str | None = TaskIdOpt,
    content: str | None = ContentOpt,
    tag: str = TagOpt,
    application: str = ApplicationOpt,
    piece_length: str | None = PieceLengthOpt,
    filtered_query_param: list[str] | None = FiltersOpt,
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Which peers hold a task, per scheduler cluster."""
    args = _args(url, task_id, content, tag, application, piece_length, filtered_query_param)
    client = ManagerClient(manager, find_token(token, data_dir or default_data_dir()))
    console = Console()
    job = _run_job(client, "get_task", args, console)
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
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for each peer."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask to type DELETE."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Delete a task from every peer that holds it."""
    args = _args(url, task_id, content, tag, application, piece_length, filtered_query_param)
    args["timeout"] = timeout
    if not yes:
        answer = typer.prompt("This deletes the task from every peer. Type DELETE to go on")
        if answer != "DELETE":
            raise DamselflyError("not deleted (you did not type DELETE)")
    client = ManagerClient(manager, find_token(token, data_dir or default_data_dir()))
    console = Console()
    job = _run_job(client, "delete_task", args, console)
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
