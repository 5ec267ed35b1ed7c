"""A real HTTP origin for tests, run as its own process, with misbehaviours by path.

    /files/<name>               normal: HEAD, Range, sendfile
    /norange/<name>             ignores Range, no Accept-Ranges
    /nohead/<name>              HEAD answers 405
    /chunked/<name>             no Content-Length, no Range
    /flaky/<n>/<name>           the first n GETs of this path answer 503
    /reset/<name>               every 3rd GET body is cut off half-way
    /slow/<kib_per_s>/<name>    throttled body
    /redirect/<name>            302 to /files/<name>
    /auth/<name>                needs "Authorization: Bearer let-me-in"
    /status/<code>              answers that status
    /_stats                     JSON: requests and body bytes by path
Start: python origin.py --root DIR [--listen IP] [--port N] [--tls-cert C --tls-key K];
prints {"port": n}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import re
import ssl
from pathlib import Path

from aiohttp import web

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
CHUNK = 64 * 1024


class Origin:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: collections.Counter[str] = collections.Counter()
        self.body_bytes: collections.Counter[str] = collections.Counter()
        self.methods: collections.Counter[str] = collections.Counter()

    def file(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            raise web.HTTPNotFound(text=f"no such file: {name}\n")
        return path

    def count(self, request: web.Request) -> None:
        self.requests[request.path] += 1
        self.methods[f"{request.method} {request.path}"] += 1

    async def send(
        self,
        request: web.Request,
        path: Path,
        *,
        ranges: bool = True,
        length: bool = True,
        rate: float | None = None,
        cut_at: float | None = None,
    ) -> web.StreamResponse:
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        match = RANGE_RE.match(request.headers.get("Range", "")) if ranges else None
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            if start >= size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
        resp = web.StreamResponse(status=status)
        resp.content_type = "application/octet-stream"
        if ranges:
            resp.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        count = end - start + 1
        if length:
            resp.content_length = count
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        sent = 0
        with path.open("rb") as f:
            f.seek(start)
            while sent < count:
                data = f.read(min(CHUNK, count - sent))
                if cut_at is not None and sent >= count * cut_at:
                    request.transport.close()
                    return resp
                await resp.write(data)
                sent += len(data)
                self.body_bytes[request.path] += len(data)
                if rate:
                    await asyncio.sleep(len(data) / rate)
        await resp.write_eof()
        return resp

    async def files(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        path = self.file(request.match_info["name"])
        if request.method == "GET":
            size = path.stat().st_size
            match = RANGE_RE.match(request.headers.get("Range", ""))
            if match:
                end = int(match.group(2)) if match.group(2) else size - 1
                self.body_bytes[request.path] += min(end, size - 1) - int(match.group(1)) + 1
            else:
                self.body_bytes[request.path] += size
        return web.FileResponse(path)

    async def norange(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        return await self.send(request, self.file(request.match_info["name"]), ranges=False)

    async def nohead(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        if request.method == "HEAD":
            return web.Response(status=405)
        return await self.send(request, self.file(request.match_info["name"]))

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        return await self.send(
            request, self.file(request.match_info["name"]), ranges=False, length=False
        )

    async def flaky(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        if request.method == "GET" and self.methods[f"GET {request.path}"] <= int(
            request.match_info["n"]
        ):
            return web.Response(status=503, text="try again\n")
        return await self.send(request, self.file(request.match_info["name"]))

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        cut = request.method == "GET" and self.methods[f"GET {request.path}"] % 3 == 0
        return await self.send(
            request, self.file(request.match_info["name"]), cut_at=0.5 if cut else None
        )

    async def slow(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        rate = float(request.match_info["rate"]) * 1024
        return await self.send(request, self.file(request.match_info["name"]), rate=rate)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        raise web.HTTPFound(f"/files/{request.match_info['name']}")

    async def auth(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        if request.headers.get("Authorization") != "Bearer let-me-in":
            return web.Response(
                status=401,
                text="unauthorized\n",
                headers={"WWW-Authenticate": 'Bearer realm="test"'},
            )
        return await self.send(request, self.file(request.match_info["name"]))

    async def status(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        code = int(request.match_info["code"])
        return web.Response(
            status=code, text=f"status {code}\n", headers={"X-Request-Id": "test-request"}
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": dict(self.requests),
                "body_bytes": dict(self.body_bytes),
                "methods": dict(self.methods),
            }
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_stats", self.stats)
        routes = [
            ("/files/{name:.+}", self.files),
            ("/norange/{name:.+}", self.norange),
            ("/nohead/{name:.+}", self.nohead),
            ("/chunked/{name:.+}", self.chunked),
            ("/flaky/{n:\\d+}/{name:.+}", self.flaky),
            ("/reset/{name:.+}", self.reset),
            ("/slow/{rate:\\d+}/{name:.+}", self.slow),
            ("/redirect/{name:.+}", self.redirect),
            ("/auth/{name:.+}", self.auth),
            ("/status/{code:\\d+}", self.status),
        ]
        for pattern, handler in routes:
            app.router.add_route("GET", pattern, handler)
            app.router.add_route("HEAD", pattern, handler)
        return app


async def serve(args: argparse.Namespace) -> None:
    # clients hanging up mid-body is what several tests do on purpose
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    origin = Origin(Path(args.root))
    runner = web.AppRunner(origin.app(), access_log=None)
    await runner.setup()
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    site = web.TCPSite(runner, args.listen, args.port, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"port": port}), flush=True)
    await asyncio.sleep(args.lifetime)  # bounded: a forgotten origin stops by itself
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--lifetime", type=float, default=900)
    asyncio.run(serve(parser.parse_args()))
