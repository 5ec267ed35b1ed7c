"""aiohttp helpers shared by the services: JSON errors with a code and a message."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from damselfly.errors import Conflict, DamselflyError, InvalidInput, NotFound, OutboundDenied

_STATUS = {InvalidInput: 400, NotFound: 404, Conflict: 409, OutboundDenied: 403}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def status_of(exc: DamselflyError) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure is JSON {code, message}; a bug is a 500 that says so, not a trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
    except DamselflyError as exc:
        return error_response(status_of(exc), exc.code, str(exc))


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    return data
