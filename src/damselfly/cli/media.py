"""`damselfly media …`: templates, submitting, listing, restarting, terminating and
downloading media tasks through the manager's API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from damselfly.cli.api_client import ManagerClient
from damselfly.cli.job_options import DataDirOpt, ManagerOpt, TokenOpt, manager_client
from damselfly.errors import DamselflyError, InvalidInput
from damselfly.units import format_size

app = typer.Typer(help="Media processing tasks: transcode, snapshots, sprites, analysis.")


def _client(manager: str, token: str | None, data_dir: Path | None) -> ManagerClient:
    return manager_client(manager, token, data_dir)


@app.command("templates")
def templates(
    kind: str | None = typer.Option(None, "--kind", help="transcode, snapshot, image_sprite…"),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Preset and custom templates."""
    query = f"?kind={quote(kind)}" if kind else ""
    rows = _client(manager, token, data_dir).call("GET", f"/api/v1/media/templates{query}")
    table = Table()
    for column in ("ID", "Kind", "Name", "Preset", "Parameters"):
        table.add_column(column)
    for t in rows:
        params = t["params"]
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if v not in (0, None, False, ""))
        table.add_row(str(t["id"]), t["kind"], t["name"], "yes" if t["preset"] else "", shown)
    Console().print(table)


def _upload(client: ManagerClient, path: Path, console: Console) -> str:
    size = path.stat().st_size
    columns = (TextColumn("upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        job = bar.add_task("upload", total=size)
        answer = client.upload(
            f"/api/v1/media/uploads?name={quote(path.name)}",
            path,
            lambda n: bar.advance(job, n),
        )
    return answer["upload_id"]


@app.command("submit")
def submit(
    source: str = typer.Argument(
        ...,
        help="An http(s) URL, a local file (uploaded), or "
        "server:PATH (a file under the server's input roots).",
    ),
    output: str = typer.Option(
        "/", "--output", help="Output directory under the server's output root."
    ),
    template: list[int] | None = typer.Option(
        None, "--template", help="Transcode template ID (100010 MP4 360p, 100210 HLS…); repeatable."
    ),
    snapshot: list[str] | None = typer.Option(
        None, "--snapshot", help="A snapshot at 3.5s or 10%; repeatable."
    ),
    sampled: str | None = typer.Option(None, "--sampled", help="Snapshots every 5s or 10%."),
    sprite: bool = typer.Option(False, "--sprite", help="An image sprite with a WebVTT index."),
    animated: str | None = typer.Option(
        None, "--animated", help="An animated GIF of START-END, e.g. 1s-4s."
    ),
    understanding: bool = typer.Option(False, "--understanding", help="Content understanding."),
    review: bool = typer.Option(False, "--review", help="Rule-based content review."),
    priority: int = typer.Option(0, "--priority", min=-10, max=10, help="Higher runs first."),
    session_id: str | None = typer.Option(None, "--session-id", help="Refuse repeats (3 days)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the task to its end."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Create a media task (and follow it with a progress bar)."""
    client = _client(manager, token, data_dir)
    console = Console(stderr=True)
    request: dict[str, Any] = {"output_dir": output, "priority": priority}
    if source.startswith(("http://", "https://")):
        request["input"] = {"url": source}
    elif source.startswith("server:"):
        request["input"] = {"path": source.removeprefix("server:")}
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"{source} is not a URL, a local file, or server:PATH")
        request["input"] = {"upload": _upload(client, path, console)}
    if template:
        request["transcodes"] = [{"template_id": t} for t in template]
    if snapshot:
        request["snapshots"] = [{"offsets": snapshot}]
    if sampled:
        request["sampled_snapshots"] = [{"interval": sampled}]
    if sprite:
        request["image_sprites"] = [{}]
    if animated:
        start, sep, end = animated.partition("-")
        if not sep:
            raise InvalidInput("--animated takes START-END, e.g. 1s-4s")
        request["animated_images"] = [{"start": start, "end": end}]
    if understanding:
        request["content_understanding"] = True
    if review:
        request["review"] = True
    if session_id:
        request["session_id"] = session_id
    task = client.call("POST", "/api/v1/media/tasks", request)
    print(task["task_id"])
    if wait:
        task = _follow(client, task, console)
        _print_task(task, Console())
        if task["failed"]:
            raise DamselflyError(
                f"task {task['task_id']} failed: {task['error_code']}: {task['message']}"
            )


def _follow(client: ManagerClient, task: dict[str, Any], console: Console) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        line = bar.add_task(task["status"], total=100)
        while task["status"] != "FINISH":
            time.sleep(0.5)
            task = client.call("GET", f"/api/v1/media/tasks/{task['task_id']}")
            running = next((s for s in task["subtasks"] if s["status"] == "PROCESSING"), None)
            label = (
                f"{task['status']} {running['type']} #{running['seq']}"
                if running
                else task["status"]
            )
            bar.update(line, completed=task["progress"], description=label)
    return task


def _when(iso: str | None) -> str:
    """2026-11-23T03:22:05.123+00:00 → 2026-11-23 03:22:05 (UTC)."""
    return iso[:19].replace("T", " ") if iso else ""


def _print_task(task: dict[str, Any], console: Console) -> None:
    state = task["status"] + (" (failed)" if task["failed"] else "")
    console.print(
        f"[bold]{task['task_id']}[/bold] {state}  run {task['run']}  "
        f"created {_when(task['created_at'])}  finished {_when(task['finish_at']) or '-'}"
    )
    info = task.get("media_info") or {}
    if info:
        console.print(
            f"input {task['input']['name']}: {info.get('container')} "
            f"{info.get('width')}x{info.get('height')} {info.get('duration')}s "
            f"{format_size(info.get('size') or 0)}"
        )
    table = Table()
    for column in ("Seq", "Type", "Status", "Progress", "Begin", "Finish", "Outputs / error"):
        table.add_column(column)
    for sub in task.get("subtasks", []):
        if sub["error_code"]:
            detail = f"{sub['error_code']}: {sub['message']}"
        elif sub["outputs"]:
            detail = "\n".join(
                f"{o['name']} ({format_size(o['size'])})" for o in sub["outputs"][:6]
            )
            if len(sub["outputs"]) > 6:
                detail += f"\n… {len(sub['outputs']) - 6} more"
        elif sub["result"]:
            detail = ", ".join(f"{k}" for k in list(sub["result"])[:6])
        else:
            detail = ""
        table.add_row(
            str(sub["seq"]),
            sub["type"],
            sub["status"],
            f"{sub['progress']}%",
            _when(sub["begin_at"]),
            _when(sub["finish_at"]),
            detail,
        )
    console.print(table)


@app.command("list")
def list_tasks(
    status: str | None = typer.Option(None, "--status", help="WAITING, PROCESSING or FINISH."),
    failed: bool | None = typer.Option(None, "--failed/--succeeded", help="Only failed ones."),
    task_id: str | None = typer.Option(None, "--task-id", help="Search by (part of) an ID."),
    page: int = typer.Option(1, "--page", min=1),
    per_page: int = typer.Option(20, "--per-page", min=1, max=100),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Newest first."""
    query: dict[str, Any] = {"page": page, "per_page": per_page}
    if status:
        query["status"] = status.upper()
    if failed is not None:
        query["failed"] = str(failed).lower()
    if task_id:
        query["task_id"] = task_id
    answer = _client(manager, token, data_dir).call(
        "GET", f"/api/v1/media/tasks?{urlencode(query)}"
    )
    table = Table(title=f"{answer['total']} task(s)")
    table.add_column("Task ID", no_wrap=True)
    for column in ("Status", "Progress", "Created at", "Finished at"):
        table.add_column(column)
    for t in answer["tasks"]:
        state = t["status"] + (" (failed)" if t["failed"] else "")
        table.add_row(
            t["task_id"], state, f"{t['progress']}%", _when(t["created_at"]), _when(t["finish_at"])
        )
    Console().print(table)


@app.command("show")
def show(
    task_id: str = typer.Argument(...),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """A task and its subtasks."""
    _print_task(
        _client(manager, token, data_dir).call("GET", f"/api/v1/media/tasks/{task_id}"), Console()
    )


@app.command("restart")
def restart(
    task_id: str = typer.Argument(...),
    wait: bool = typer.Option(False, "--wait", help="Follow it to its end."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Run a finished task again, with the parameters frozen when it was created."""
    client = _client(manager, token, data_dir)
    task = client.call("POST", f"/api/v1/media/tasks/{task_id}/restart")
    print(f"{task_id} restarted (run {task['run']})")
    if wait:
        _print_task(_follow(client, task, Console(stderr=True)), Console())


@app.command("abort")
def abort(
    task_id: str = typer.Argument(...),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Terminate a WAITING task (it never runs)."""
    _client(manager, token, data_dir).call("POST", f"/api/v1/media/tasks/{task_id}/abort")
    print(f"{task_id} terminated")


@app.command("download")
def download(
    task_id: str = typer.Argument(...),
    seq: int = typer.Argument(..., help="The subtask's sequence number."),
    output: Path | None = typer.Option(None, "-O", "--output", help="Where to write it."),
    index: int = typer.Option(0, "--index", help="Which file of the subtask (0: the first)."),
    all_files: bool = typer.Option(False, "--zip", help="Every file of the subtask, zipped."),
    manager: str = ManagerOpt,
    token: str | None = TokenOpt,
    data_dir: Path | None = DataDirOpt,
) -> None:
    """Download a subtask's output."""
    client = _client(manager, token, data_dir)
    task = client.call("GET", f"/api/v1/media/tasks/{task_id}")
    sub = next((s for s in task["subtasks"] if s["seq"] == seq), None)
    if sub is None:
        raise InvalidInput(f"{task_id} has no subtask {seq}")
    if not sub["outputs"]:
        raise DamselflyError(f"subtask {seq} of {task_id} has no files ({sub['status']})")
    if all_files:
        path, name, size = (
            f"/api/v1/media/tasks/{task_id}/subtasks/{seq}/archive",
            f"{task_id}-{seq}.zip",
            None,
        )
    else:
        if not 0 <= index < len(sub["outputs"]):
            raise InvalidInput(f"subtask {seq} has {len(sub['outputs'])} files")
        entry = sub["outputs"][index]
        path = f"/api/v1/media/tasks/{task_id}/subtasks/{seq}/outputs/{index}?download=true"
        name, size = entry["name"], entry["size"]
    target = output or Path(name)
    if target.is_dir():
        target = target / name
    columns = (TextColumn("download"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task("download", total=size)
        client.download(path, target, lambda n: bar.advance(job, n))
    print(target)
