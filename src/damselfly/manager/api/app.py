"""The manager's FastAPI application: routers, and errors as {code, message}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from damselfly.console.app import mount_console
from damselfly.errors import DamselflyError
from damselfly.manager.api import clusters, jobs, media, users
from damselfly.manager.api.deps import ManagerContext
from damselfly.web import status_of

_CODES = {400: "InvalidArgument", 401: "Unauthenticated", 403: "PermissionDenied",
          404: "ResourceNotFound", 405: "MethodNotAllowed", 409: "Conflict"}  # fmt: skip


def build_app(ctx: ManagerContext) -> FastAPI:
    app = FastAPI(
        title="damselfly manager",
        version="1",
        description="Task cache search and deletion, preheat, jobs; media processing tasks.",
    )
    app.state.context = ctx
    app.include_router(users.router)
    app.include_router(clusters.router)
    app.include_router(jobs.router)
    app.include_router(media.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "Error")
        return JSONResponse(
            {"code": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse(
            {"code": "InvalidArgument", "message": "; ".join(problems) or "invalid request"},
            status_code=422,
        )

    @app.exception_handler(DamselflyError)
    async def ours(_: Request, exc: DamselflyError) -> JSONResponse:
        status = status_of(exc)
        if status == 400:
            status = 422  # bad arguments, as the rest of the API answers them
        return JSONResponse({"code": exc.code, "message": str(exc)}, status_code=status)

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def out_of_range(_: Request, exc: Exception) -> JSONResponse:
        # a number or text the database cannot hold: the caller's input, not our bug
        cause = str(getattr(exc, "orig", exc)).strip().splitlines()
        return JSONResponse(
            {"code": "InvalidArgument",
             "message": f"a value is out of range for the database ({cause[0] if cause else exc})"},
            status_code=422,
        )  # fmt: skip

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        # not a bug: the database restarts or is unreachable; the caller may retry
        cause = str(getattr(exc, "orig", exc)).strip().splitlines()
        return JSONResponse(
            {
                "code": "DatabaseUnavailable",
                "message": "the manager's database is unavailable"
                + (f" ({cause[0]})" if cause else "")
                + "; retry in a few seconds",
            },
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        # a bug: the trace goes to the server's stderr, the caller gets one clear line
        return JSONResponse(
            {
                "code": "InternalError",
                "message": f"the manager failed: {type(exc).__name__}: {exc}; see its log",
            },
            status_code=500,
        )

    mount_console(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app
