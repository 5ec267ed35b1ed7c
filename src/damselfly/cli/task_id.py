"""`damselfly task-id`: print the task ID a download or a search would use."""

from __future__ import annotations

import typer

from damselfly import ids
from damselfly.cli.options import filters_or_default
from damselfly.errors import InvalidInput
from damselfly.units import parse_size

HELP = """Print the Dragonfly-compatible task ID for a URL or for content.

Examples:

  damselfly task-id https://example.com/file.tar.gz --tag v1

  damselfly task-id https://example.com/f --piece-length 4MiB --filtered-query-param token

  damselfly task-id --content-for-calculating-task-id my-content
"""


def task_id(
    url: str | None = typer.Argument(None, help="The URL of the file."),
    tag: str = typer.Option("", "--tag", help="Tag that tells tasks of one URL apart."),
    application: str = typer.Option("", "--application", help="Caller application."),
    piece_length: str | None = typer.Option(
        None, "--piece-length", help="Piece length given to the download (bytes or 4MiB)."
    ),
    filtered_query_param: list[str] | None = typer.Option(
        None,
        "--filtered-query-param",
        help="Query key left out of the ID; repeatable; replaces the default list.",
    ),
    content: str | None = typer.Option(
        None, "--content-for-calculating-task-id", help="Compute the ID from this content."
    ),
) -> None:
    if not url and not content:
        raise InvalidInput("give a URL or --content-for-calculating-task-id")
    length = parse_size(piece_length) if piece_length is not None else None
    if length is not None and length <= 0:
        raise InvalidInput(f"invalid piece length {piece_length!r}: must be positive")
    identity = ids.TaskIdentity(
        url=url or "",
        tag=tag,
        application=application,
        piece_length=length,
        filtered_query_params=filters_or_default(filtered_query_param),
        content_for_calculating_task_id=content,
    )
    typer.echo(ids.task_id(identity))
