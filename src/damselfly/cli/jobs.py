"""`damselfly jobs list|show`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from damselfly.cli.api_client import ManagerClient, find_token
from damselfly.cli.job_options import DataDirOpt, ManagerOpt, TokenOpt
from damselfly.cli.options import default_data_dir

app = typer.Typer(help="The manager's jobs.")


@app.command("list")
def list_jobs(
    type_: str | None = typer.Option(None, "--type", help="e.g. get_task, delete_task."),
    state: str | None = typer.Option(None, "--state", help="PENDING, SUCCESS or FAILURE."),
    page: int = typer.Option(1, "--page", min=1),
    per_page: int = typer.Option(10, "--per-page", min=1, max=1000),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Newest first."""
    client = ManagerClient(manager, find_token(token, data_dir or default_data_dir()))
    query = f"?page={page}&per_page={per_page}"
    if type_:
        query += f"&type={type_}"
    if state:
        query += f"&state={state.upper()}"
    jobs = client.call("GET", "/api/v1/jobs" + query)
    table = Table()
    for column in ("ID", "Type", "State", "Task ID", "Created at"):
        table.add_column(column)
    for job in jobs:
        task = (job.get("result") or {}).get("task_id") or job["args"].get("task_id") or ""
        table.add_row(str(job["id"]), job["type"], job["state"], task, job["created_at"])
    Console().print(table if jobs else "no jobs")


@app.command("show")
def show(
    job_id: int = typer.Argument(..., help="The job's ID."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    client = ManagerClient(manager, find_token(token, data_dir or default_data_dir()))
    job = client.call("GET", f"/api/v1/jobs/{job_id}")
    console = Console()
    for key in ("id", "type", "state", "created_at", "started_at", "finished_at"):
        console.print(f"[bold]{key}[/bold]: {job[key]}")
    console.print("[bold]args[/bold]: " + json.dumps(job["args"]))
    if job["error_log"]:
        console.print("[bold red]error log[/bold red]:\n" + job["error_log"])
    console.print_json(json.dumps(job["result"]))
