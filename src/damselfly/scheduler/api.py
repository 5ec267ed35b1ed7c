"""The scheduler's HTTP/JSON API for peers (and, later, the manager)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from damselfly.logs import EventLog
from damselfly.protocol.scheduler import (
    Announcement,
    AnnounceReply,
    HostInfo,
    ParentInfo,
    PeerState,
)
from damselfly.scheduler.resources import Host, Peer
from damselfly.scheduler.service import Scheduler
from damselfly.web import json_errors, read_json

SCHEDULER = web.AppKey("scheduler", Scheduler)
LOG = web.AppKey("log", EventLog)
SESSION = web.AppKey("session", aiohttp.ClientSession)
BACKGROUND = web.AppKey("background", set)

_SEED_TRIGGER_TIMEOUT = 10.0


def parent_info(peer: Peer) -> ParentInfo:
    return ParentInfo(
        host_id=peer.host.id,
        peer_id=peer.id,
        hostname=peer.host.hostname,
        ip=peer.host.ip,
        port=peer.host.port,
        type=peer.host.type,
        state=peer.state,
        finished_count=peer.finished_count,
    )


def host_json(host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "hostname": host.hostname,
        "ip": host.ip,
        "port": host.port,
        "type": host.type.value,
        "upload_slots": host.upload_slots,
        "free_upload_slots": host.free_upload_slots,
        "created_at": host.created_at,
        "last_seen": host.last_seen,
        "tasks": len(host.peers),
    }


def peer_json(peer: Peer) -> dict[str, Any]:
    return {
        "peer_id": peer.id,
        "host_id": peer.host.id,
        "hostname": peer.host.hostname,
        "ip": peer.host.ip,
        "port": peer.host.port,
        "host_type": peer.host.type.value,
        "state": peer.state.value,
        "finished_pieces": peer.finished_count,
        "failures": peer.failures,
        "parents": list(peer.parents),  # host IDs last handed to it
        "created_at": peer.created_at,
        "updated_at": peer.updated_at,
    }


async def register_host(request: web.Request) -> web.Response:
    info = HostInfo.from_json(await read_json(request))
    new = request.app[SCHEDULER].register_host(info)
    if new:
        request.app[LOG].info("host registered", host_id=info.id, ip=info.ip, type=info.type)
    return web.json_response({"new": new})


async def remove_host(request: web.Request) -> web.Response:
    host_id = request.match_info["host_id"]
    if not request.app[SCHEDULER].remove_host(host_id):
        raise web.HTTPNotFound(text=f"host {host_id} is not registered")
    request.app[LOG].info("host left", host_id=host_id)
    return web.Response(status=204)


async def list_hosts(request: web.Request) -> web.Response:
    return web.json_response([host_json(h) for h in request.app[SCHEDULER].hosts.values()])


async def announce(request: web.Request) -> web.Response:
    data = await read_json(request)
    data["task_id"] = request.match_info["task_id"]
    a = Announcement.from_json(data)
    scheduler = request.app[SCHEDULER]
    result = scheduler.announce(a)
    if result.trigger_seed is not None:
        _spawn(request.app, _trigger_seed(request.app, a, result.trigger_seed))
    if result.back_to_source:
        request.app[LOG].info("peer sent back to source", task_id=a.task_id, host_id=a.host_id)
    reply = AnnounceReply([parent_info(p) for p in result.parents], result.back_to_source)
    return web.json_response(reply.to_json())


async def leave_task(request: web.Request) -> web.Response:
    task_id, host_id = request.match_info["task_id"], request.match_info["host_id"]
    if not request.app[SCHEDULER].leave_task(task_id, host_id):
        raise web.HTTPNotFound(text=f"host {host_id} does not hold task {task_id}")
    return web.Response(status=204)


async def get_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    task = request.app[SCHEDULER].task(task_id)
    if task is None:
        raise web.HTTPNotFound(text=f"no peer holds task {task_id}")
    return web.json_response(
        {
            "id": task.id,
            "url": task.url,
            "tag": task.tag,
            "application": task.application,
            "piece_length": task.piece_length,
            "content_length": task.content_length,
            "total_pieces": task.total_pieces,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "peers": [peer_json(p) for p in task.peers.values()],
        }
    )


async def delete_task_everywhere(request: web.Request) -> web.Response:
    """Tell every peer holding a task to delete it, all at once, each with a timeout.

    Upstream asks one peer at a time; with one stopped host that is one timeout per
    host. Here the whole fan-out takes at most one timeout.
    """
    task_id = request.match_info["task_id"]
    try:
        timeout = float(request.query.get("timeout", "5"))
    except ValueError:
        raise web.HTTPBadRequest(text="timeout must be a number of seconds") from None
    if not 0 < timeout <= 300:
        raise web.HTTPBadRequest(text="timeout must be within (0, 300] seconds")
    scheduler = request.app[SCHEDULER]
    task = scheduler.task(task_id)
    peers = [p for p in task.peers.values() if p.state is not PeerState.PENDING] if task else []
    session = request.app[SESSION]

    async def delete_on(peer: Peer) -> tuple[Peer, str | None]:
        url = f"http://{peer.host.ip}:{peer.host.port}/api/v1/tasks/{task_id}"
        try:
            async with session.delete(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status in (200, 404):  # gone either way
                    return peer, None
                body = await resp.json(content_type=None)
                return peer, f"peer answered {resp.status}: {body.get('message', body)}"
        except TimeoutError:
            return peer, f"peer did not answer within {timeout:g}s"
        except aiohttp.ClientError as exc:
            return peer, f"peer unreachable: {exc}"

    outcomes = await asyncio.gather(*(delete_on(p) for p in peers))
    success, failure = [], []
    for peer, problem in outcomes:
        entry = {
            "host_id": peer.host.id,
            "hostname": peer.host.hostname,
            "ip": peer.host.ip,
            "host_type": peer.host.type.value,
        }
        if problem is None:
            scheduler.leave_task(task_id, peer.host.id)
            success.append(entry)
        else:
            failure.append({**entry, "description": problem})
    request.app[LOG].info(
        "task deleted from peers", task_id=task_id, success=len(success), failure=len(failure)
    )
    return web.json_response({"success_tasks": success, "failure_tasks": failure})


_SCOPES = ("single_seed_peer", "all_seed_peers", "all_peers")


async def preheat(request: web.Request) -> web.Response:
    """Have seed peers (or all peers) fetch a task, and wait until each has it.

    Body: {"request": {url, tag, application, piece_length, filtered_query_params},
    "scope": one of single_seed_peer | all_seed_peers | all_peers, "timeout": s}.
    """
    data = await read_json(request)
    wanted = data.get("request")
    scope = data.get("scope", "single_seed_peer")
    timeout = data.get("timeout", 600)
    if not isinstance(wanted, dict) or not wanted.get("url"):
        raise web.HTTPBadRequest(text="request with a url is required")
    if scope not in _SCOPES:
        raise web.HTTPBadRequest(text=f"scope must be one of {', '.join(_SCOPES)}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise web.HTTPBadRequest(text="timeout must be a positive number of seconds")
    scheduler = request.app[SCHEDULER]
    alive = [h for h in scheduler.hosts.values() if scheduler.alive(h)]
    if scope == "all_peers":
        hosts = alive
    else:
        hosts = sorted((h for h in alive if h.type.value == "super"), key=lambda h: h.load)
        if scope == "single_seed_peer":
            hosts = hosts[:1]
    if not hosts:
        raise web.HTTPConflict(text=f"no {scope.replace('_', ' ')} is registered to preheat on")
    session = request.app[SESSION]
    deadline = asyncio.get_running_loop().time() + float(timeout)

    async def on(host: Host) -> dict[str, Any]:
        entry = {
            "host_id": host.id,
            "hostname": host.hostname,
            "ip": host.ip,
            "host_type": host.type.value,
        }

        def failed(description: str, task_id: str = "") -> dict[str, Any]:
            return {**entry, "task_id": task_id, "state": "failed", "description": description}

        base = f"http://{host.ip}:{host.port}/api/v1/tasks"
        try:
            async with session.post(
                base, json=wanted, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 202:
                    return failed(str(answer)[:300])
            task_id = answer["task_id"]
            while asyncio.get_running_loop().time() < deadline:
                async with session.get(
                    f"{base}/{task_id}", timeout=aiohttp.ClientTimeout(total=10)
                ) as resp:
                    stat = await resp.json(content_type=None) if resp.status == 200 else {}
                if stat.get("state") == "succeeded":
                    return {**entry, "task_id": task_id, "state": "succeeded", "description": ""}
                if stat.get("state") == "failed":
                    return failed(stat.get("error") or "the download failed", task_id)
                await asyncio.sleep(0.1)
            return failed(f"not finished within {timeout}s", task_id)
        except (aiohttp.ClientError, TimeoutError, KeyError) as exc:
            return failed(f"peer unreachable: {exc}")

    results = await asyncio.gather(*(on(h) for h in hosts))
    request.app[LOG].info(
        "preheat done",
        url=str(wanted.get("url")),
        scope=scope,
        succeeded=sum(r["state"] == "succeeded" for r in results),
        failed=sum(r["state"] != "succeeded" for r in results),
    )
    return web.json_response({"hosts": results})


async def healthz(request: web.Request) -> web.Response:
    s = request.app[SCHEDULER]
    return web.json_response({"ok": True, "hosts": len(s.hosts), "tasks": len(s.tasks)})


async def _trigger_seed(app: web.Application, a: Announcement, seed: Host) -> None:
    """Tell a seed peer to fetch the task from the source; on failure children go there."""
    url = f"http://{seed.ip}:{seed.port}/api/v1/tasks"
    body = {"url": a.url, **a.request}
    try:
        async with app[SESSION].post(
            url, json=body, timeout=aiohttp.ClientTimeout(total=_SEED_TRIGGER_TIMEOUT)
        ) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        app[SCHEDULER].seed_failed(a.task_id, seed.id)
        app[LOG].warning("seed trigger failed", task_id=a.task_id, seed=seed.id, error=str(exc))
        return
    app[LOG].info("seed triggered", task_id=a.task_id, seed=seed.id, url=a.url)


def _spawn(app: web.Application, coro: Any) -> None:
    tasks: set[asyncio.Task] = app[BACKGROUND]
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _expire_loop(app: web.Application) -> None:
    while True:
        await asyncio.sleep(1.0)
        for host_id in app[SCHEDULER].expire_hosts():
            app[LOG].warning("host expired, no heartbeat", host_id=host_id)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession()
    expiry = asyncio.create_task(_expire_loop(app))
    yield
    expiry.cancel()
    for task in list(app[BACKGROUND]):
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await expiry
    await app[SESSION].close()


def build_app(scheduler: Scheduler, log: EventLog) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[SCHEDULER] = scheduler
    app[LOG] = log
    app[BACKGROUND] = set()
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/v1/hosts", register_host)
    app.router.add_get("/api/v1/hosts", list_hosts)
    app.router.add_delete("/api/v1/hosts/{host_id}", remove_host)
    app.router.add_post("/api/v1/tasks/{task_id}/announce", announce)
    app.router.add_get("/api/v1/tasks/{task_id}", get_task)
    app.router.add_delete("/api/v1/tasks/{task_id}/hosts/{host_id}", leave_task)
    app.router.add_post("/api/v1/tasks/{task_id}/delete", delete_task_everywhere)
    app.router.add_post("/api/v1/preheat", preheat)
    return app
