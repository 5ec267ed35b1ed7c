"""The manager process: first start, authentication, roles, tokens, clusters, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.manager import PASSWORD_RE, ManagerProcess, start_manager


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ManagerProcess]:
    m = start_manager(tmp_path / "mgr")
    try:
        yield m
    finally:
        m.stop()
    assert "Traceback" not in (m.data_dir / "stderr.log").read_text()


def test_first_start_creates_root_once(manager: ManagerProcess, tmp_path: Path) -> None:
    match = PASSWORD_RE.search(manager.banner)
    assert match, manager.banner
    token_file = manager.data_dir / "manager" / "root-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    status, me = manager.call("GET", "/api/v1/users/me", token=manager.root_token)
    assert status == 200 and me["name"] == "root" and me["role"] == "root"
    # the password works for a sign-in, and is stored only as an argon2 hash
    status, signed = manager.call(
        "POST", "/api/v1/users/signin", {"name": "root", "password": match.group(1)}
    )
    assert status == 201 and signed["token"].startswith("dfly_")
    db = sqlite3.connect(manager.data_dir / "manager.db")
    (stored,) = db.execute("SELECT password_hash FROM users WHERE name='root'").fetchone()
    assert stored.startswith("$argon2") and match.group(1) not in stored
    tokens = [row[0] for row in db.execute("SELECT token_hash FROM tokens")]
    assert manager.root_token not in tokens and len(tokens[0]) == 64
    db.close()
    # a restart keeps root and its token, and makes no second root
    manager.stop()
    again = start_manager(manager.data_dir)
    try:
        assert "created user root" not in again.banner
        assert again.call("GET", "/api/v1/users/me", token=again.root_token)[0] == 200
        assert len(again.call("GET", "/api/v1/users", token=again.root_token)[1]) == 1
    finally:
        again.stop()


def test_every_call_needs_a_valid_token(manager: ManagerProcess) -> None:
    for method, path in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/scheduler-clusters"),
        ("GET", "/api/v1/personal-access-tokens"),
    ]:
        status, body = manager.call(method, path, {"name": "x"})
        assert status == 401, (method, path)
        assert body["code"] == "Unauthenticated" and "Bearer" in body["message"]
    status, body = manager.call("GET", "/api/v1/users", token="dfly_not-a-real-token")
    assert status == 401 and "unknown or revoked" in body["message"]
    status, body = manager.call(
        "POST", "/api/v1/users/signin", {"name": "root", "password": "wrong-password"}
    )
    assert status == 401


def test_guest_reads_but_cannot_change(manager: ManagerProcess) -> None:
    root = manager.root_token
    status, user = manager.call(
        "POST",
        "/api/v1/users",
        {"name": "viewer", "password": "viewer-pass", "role": "guest"},
        token=root,
    )
    assert status == 201 and user["role"] == "guest"
    status, signed = manager.call(
        "POST", "/api/v1/users/signin", {"name": "viewer", "password": "viewer-pass"}
    )
    guest = signed["token"]
    assert manager.call("GET", "/api/v1/scheduler-clusters", token=guest)[0] == 200
    for method, path, body in [
        ("POST", "/api/v1/scheduler-clusters", {"name": "c1"}),
        ("POST", "/api/v1/users", {"name": "x", "password": "12345678"}),
        ("POST", "/api/v1/schedulers", {"cluster_id": 1, "hostname": "h", "ip": "1", "port": 1}),
    ]:
        status, answer = manager.call(method, path, body, token=guest)
        assert status == 403, path
        assert answer["code"] == "PermissionDenied" and "viewer" in answer["message"]


def test_tokens_can_be_revoked(manager: ManagerProcess) -> None:
    root = manager.root_token
    status, made = manager.call("POST", "/api/v1/personal-access-tokens", {"name": "ci"}, root)
    assert status == 201
    assert manager.call("GET", "/api/v1/users/me", token=made["token"])[0] == 200
    status, revoked = manager.call(
        "DELETE", f"/api/v1/personal-access-tokens/{made['id']}", token=root
    )
    assert status == 200 and revoked["revoked_at"]
    assert manager.call("GET", "/api/v1/users/me", token=made["token"])[0] == 401
    listed = manager.call("GET", "/api/v1/personal-access-tokens", token=root)[1]
    assert "token" not in listed[0] and {t["name"] for t in listed} == {"local CLI", "ci"}


def test_clusters_and_schedulers(manager: ManagerProcess) -> None:
    root = manager.root_token
    status, one = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "east"}, root)
    assert status == 201
    status, two = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "west"}, root)
    assert status == 201 and two["id"] != one["id"]
    status, dup = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "east"}, root)
    assert status == 409 and dup["code"] == "Conflict"
    sched = {"cluster_id": one["id"], "hostname": "s1", "ip": "10.0.0.1", "port": 8002}
    first = manager.call("POST", "/api/v1/schedulers", sched, root)[1]
    again = manager.call("POST", "/api/v1/schedulers", sched, root)[1]
    assert first["id"] == again["id"] and again["last_seen"] >= first["last_seen"]
    status, missing = manager.call("POST", "/api/v1/schedulers", {**sched, "cluster_id": 999}, root)
    assert status == 404 and "999" in missing["message"]


def test_seed_peer_clusters_serve_scheduler_clusters(manager: ManagerProcess) -> None:
    root = manager.root_token
    east = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "east"}, root)[1]
    west = manager.call("POST", "/api/v1/scheduler-clusters", {"name": "west"}, root)[1]
    body = {"name": "seeds", "scheduler_cluster_ids": [east["id"], west["id"]]}
    status, made = manager.call("POST", "/api/v1/seed-peer-clusters", body, root)
    assert status == 201 and made["scheduler_cluster_ids"] == sorted([east["id"], west["id"]])
    assert manager.call("POST", "/api/v1/seed-peer-clusters", body, root)[0] == 409
    status, missing = manager.call(
        "POST", "/api/v1/seed-peer-clusters", {"name": "x", "scheduler_cluster_ids": [99]}, root
    )
    assert status == 404 and "99" in missing["message"]
    listed = manager.call("GET", "/api/v1/seed-peer-clusters", token=root)[1]
    assert [c["name"] for c in listed] == ["seeds"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 200}, "name"),
        ({}, "name"),
        ("not an object", "object"),
    ],
)
def test_bad_input_is_a_422_with_a_message(
    manager: ManagerProcess, body: object, fragment: str
) -> None:
    status, answer = manager.call(
        "POST", "/api/v1/scheduler-clusters", body, token=manager.root_token
    )
    assert status == 422
    assert answer["code"] == "InvalidArgument" and fragment in answer["message"].lower()


def test_openapi_is_served(manager: ManagerProcess) -> None:
    status, spec = manager.call("GET", "/openapi.json")
    assert status == 200
    assert "/api/v1/scheduler-clusters" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_root_page_says_where_the_api_is(manager: ManagerProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(manager.url + "/", timeout=10) as resp:
        page = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/html")
    assert "/openapi.json" in page and "root-token" in page
