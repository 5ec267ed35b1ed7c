"""Mounting the console on the manager's app: pages, sign-in, static files."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from damselfly.console import cache_pages, media_pages
from damselfly.console.render import HERE, make_templates
from damselfly.console.session import (
    COOKIE,
    SignInRequired,
    cookie_user,
    same_origin,
    sign_in,
    sign_out,
)
from damselfly.manager.api.deps import DB

templates = make_templates()


def mount_console(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    guarded = [Depends(same_origin)]  # every console change comes from a console page
    app.include_router(cache_pages.router, include_in_schema=False, dependencies=guarded)
    app.include_router(media_pages.router, include_in_schema=False, dependencies=guarded)

    @app.exception_handler(SignInRequired)
    async def to_login(request: Request, exc: SignInRequired) -> Response:
        target = f"/console/login?next={quote(exc.next_path)}"
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/tasks", status_code=307)

    @app.get("/console", include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse("/console/tasks", status_code=307)

    @app.get("/console/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, session: DB, next: str = "/console/tasks") -> Response:
        if cookie_user(request, session) is not None:
            return RedirectResponse(_safe(next), status_code=303)
        return templates.TemplateResponse(request, "login.html", {"next": next, "error": ""})

    @app.post("/console/login", include_in_schema=False, dependencies=guarded)
    def login(
        request: Request,
        session: DB,
        name: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/console/tasks",
    ) -> Response:
        token = sign_in(session, name, password)
        if token is None:
            return templates.TemplateResponse(
                request, "login.html",
                {"next": next, "error": "Wrong user name or password."}, status_code=401,
            )  # fmt: skip
        response = RedirectResponse(_safe(next), status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")  # fmt: skip
        return response

    @app.post("/console/logout", include_in_schema=False, dependencies=guarded)
    def logout(request: Request, session: DB) -> Response:
        if request.cookies.get(COOKIE):
            sign_out(session, request.cookies[COOKIE])
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


def _safe(target: str) -> str:
    """Only our own pages: `next` must not send a signed-in user elsewhere."""
    return target if target.startswith("/console/") and "//" not in target else "/console/tasks"
