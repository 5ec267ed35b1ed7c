"""Starting the manager: database, migrations, the first root user, the HTTP server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn

from damselfly.manager.api.app import build_app
from damselfly.manager.api.deps import ManagerContext
from damselfly.manager.auth import bootstrap_root
from damselfly.manager.db import make_engine, migrate, sessions, sqlite_url
from damselfly.settings import ManagerSettings


def prepare(settings: ManagerSettings) -> tuple[ManagerContext, list[str]]:
    """Migrate the database and make root on first start; lines to tell the user."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir))
    migrate(engine)
    factory = sessions(engine)
    with factory.begin() as session:
        boot = bootstrap_root(session, settings.data_dir)
    lines = []
    if boot.created:
        lines += [
            "created user root with password " + (boot.password or ""),
            "  (shown once; change it with PUT /api/v1/users/me/password)",
        ]
    lines.append(f"root's API token: {boot.token_file} (readable only by you)")
    return ManagerContext(factory, settings.data_dir), lines


async def serve(settings: ManagerSettings, ready_lines: list[str], ctx: ManagerContext) -> None:
    config = uvicorn.Config(
        build_app(ctx),
        host=settings.listen,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises why it could not start
            raise SystemExit(1)
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"manager ready: http://{settings.listen}:{port} (API /api/v1, /openapi.json)")
    for line in ready_lines:
        print(line)
    print("", end="", flush=True)
    await task


def token_file(data_dir: Path) -> Path:
    return data_dir / "manager" / "root-token"
