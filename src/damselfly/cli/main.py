"""Entry point: `damselfly <command>`; every user-facing error becomes one clear line."""

from __future__ import annotations

import os
import sys

import typer

from damselfly.cli import config as config_cmd
from damselfly.cli import get as get_cmd
from damselfly.cli import jobs as jobs_cmd
from damselfly.cli import manager as manager_cmd
from damselfly.cli import media as media_cmd
from damselfly.cli import peer as peer_cmd
from damselfly.cli import preheat as preheat_cmd
from damselfly.cli import scheduler as scheduler_cmd
from damselfly.cli import serve as serve_cmd
from damselfly.cli import task_id as task_id_cmd
from damselfly.cli import tasks as tasks_cmd
from damselfly.cli import worker as worker_cmd
from damselfly.errors import DamselflyError


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="damselfly",
        help="A peer-to-peer file cache with Dragonfly-compatible task IDs.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command("get", help=get_cmd.HELP, no_args_is_help=True)(get_cmd.get)
    app.command("task-id", help=task_id_cmd.HELP)(task_id_cmd.task_id)
    app.command("peer", help=peer_cmd.HELP)(peer_cmd.peer)
    app.command("scheduler", help=scheduler_cmd.HELP)(scheduler_cmd.scheduler)
    app.command("manager", help=manager_cmd.HELP)(manager_cmd.manager)
    app.command("serve", help=serve_cmd.HELP)(serve_cmd.serve)
    app.command("worker", help=worker_cmd.HELP)(worker_cmd.worker)
    app.command("preheat", help=preheat_cmd.HELP)(preheat_cmd.preheat)
    app.add_typer(tasks_cmd.app, name="task")
    app.add_typer(jobs_cmd.app, name="jobs")
    app.add_typer(media_cmd.app, name="media")
    app.add_typer(config_cmd.app, name="config")
    return app


def report(exc: DamselflyError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    for line in exc.details():
        print(f"  {line}", file=sys.stderr)


def run(argv: list[str] | None = None) -> int:
    app = build_app()
    try:
        result = app(args=argv, prog_name="damselfly", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: bad or missing options
        show = getattr(exc, "show", None)
        if show:
            show()
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except DamselflyError as exc:
        report(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; finished pieces are kept and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the trace for a debug run
        if os.environ.get("DAMSELFLY_DEBUG"):
            raise
        print(
            f"error: internal error {type(exc).__name__}: {exc}; rerun with "
            "DAMSELFLY_DEBUG=1 for the trace and report it",
            file=sys.stderr,
        )
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
