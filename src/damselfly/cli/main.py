"""Entry point: `damselfly <command>`; every user-facing error becomes one clear line."""

from __future__ import annotations

import gc
import importlib
import os
import sys

import typer

from damselfly.errors import DamselflyError

# name -> (module under damselfly.cli, attribute, is a group of subcommands). Only the
# command being run is imported: a `get` should not pay for the manager's client,
# Rich tables or the config loader (about 0.15 s of a cold start).
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "get": ("get", "get", False),
    "task-id": ("task_id", "task_id", False),
    "peer": ("peer", "peer", False),
    "scheduler": ("scheduler", "scheduler", False),
    "manager": ("manager", "manager", False),
    "serve": ("serve", "serve", False),
    "worker": ("worker", "worker", False),
    "preheat": ("preheat", "preheat", False),
    "task": ("tasks", "app", True),
    "jobs": ("jobs", "app", True),
    "media": ("media", "app", True),
    "config": ("config", "app", True),
}
_NO_ARGS_IS_HELP = {"get"}


def _root() -> None:
    """A peer-to-peer file cache with Dragonfly-compatible task IDs."""


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """The CLI; with `argv`, only the command it names (all of them for help)."""
    app = typer.Typer(
        name="damselfly",
        help="A peer-to-peer file cache with Dragonfly-compatible task IDs.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # with one command registered, Typer would make it the root and read "get" as an
    # argument; a root callback keeps the command layer
    app.callback()(_root)
    first = next((a for a in argv or () if not a.startswith("-")), None)
    names = [first] if first in COMMANDS else list(COMMANDS)
    for name in names:
        module_name, attribute, group = COMMANDS[name]
        module = importlib.import_module(f"damselfly.cli.{module_name}")
        if group:
            app.add_typer(getattr(module, attribute), name=name)
        else:
            app.command(name, help=module.HELP, no_args_is_help=name in _NO_ARGS_IS_HELP)(
                getattr(module, attribute)
            )
    return app


def report(exc: DamselflyError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    for line in exc.details():
        print(f"  {line}", file=sys.stderr)


def run(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Building the CLI imports the command's modules: ~100k objects that live as long
    # as the process. Collecting while they are made cost 10-20 ms of every `get`.
    gc.disable()
    try:
        app = build_app(args)
    finally:
        gc.freeze()
        gc.enable()
    try:
        result = app(args=args, prog_name="damselfly", standalone_mode=False)
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


# Commands that leave nothing behind for the interpreter's teardown to do: every file
# is closed and every thread done when they return. Skipping the teardown (freeing
# each module, 20-70 ms here) is time a user waits for nothing.
_QUICK_EXIT = {"get", "task-id"}


def main() -> None:
    code = run()
    if sys.argv[1:2] and sys.argv[1] in _QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
