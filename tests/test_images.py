"""Image jobs end to end: a real registry behind a bearer-token realm, a manager, a
scheduler, a seed peer and peers as processes; search, preheat and delete by image
manifest URL, through the API and the CLI."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly import ids
from tests.support.cluster import Cluster, PeerProcess, wait_for
from tests.support.manager import ManagerProcess, start_stack
from tests.support.processes import run_damselfly, sha256_file
from tests.support.registry import (
    PASSWORD,
    USER,
    PushedImage,
    Registry,
    available,
    layer,
    push_index,
)

pytestmark = pytest.mark.skipif(not available(), reason="needs docker-registry (./dev test)")
MiB = 1 << 20
REPO = "team/app"  # private: only alice may pull it
BASIC = "Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _task(server: Registry, digest: str) -> str:
    return ids.task_id(ids.TaskIdentity(url=server.blob_url(REPO, digest)))


def _job(manager: ManagerProcess, type_: str, args: dict, timeout: float = 60) -> dict:
    token = manager.root_token
    status, job = manager.call("POST", "/api/v1/jobs", {"type": type_, "args": args}, token)
    assert status == 200, job

    def done() -> bool:
        nonlocal job
        job = manager.call("GET", f"/api/v1/jobs/{job['id']}", token=token)[1]
        return job["state"] != "PENDING"

    assert wait_for(done, timeout=timeout, interval=0.05), job
    return job


@pytest.fixture
def image_stack(
    tmp_path: Path,
) -> Iterator[tuple[Registry, PushedImage, ManagerProcess, Cluster, list[PeerProcess]]]:
    """A token-auth registry with a two-platform image; a manager, a scheduler, a seed
    peer and three peers."""
    server = Registry("token", tmp_path / "registry").start()
    manager = cluster = None
    try:
        shared = layer(MiB, seed=30)
        _, images = push_index(
            server, REPO, "v1",
            {("linux", "amd64"): [layer(3 * MiB, 31), shared],
             ("linux", "arm64"): [layer(2 * MiB, 32), shared]},
        )  # fmt: skip
        manager, cluster, _ = start_stack(tmp_path / "stack")
        cluster.start_peer("seed", seed=True)
        peers = [cluster.start_peer(name) for name in ("peer-a", "peer-b", "peer-c")]
        assert wait_for(lambda: len(cluster.scheduler.host_ids()) == 4)
        yield server, images[("linux", "amd64")], manager, cluster, peers
        assert not cluster.tracebacks()
        assert "Traceback" not in (manager.data_dir / "stderr.log").read_text()
    finally:
        if manager is not None:
            manager.stop()
        if cluster is not None:
            cluster.close()
        server.close()


def test_search_preheat_and_delete_an_image_by_manifest_url(
    image_stack: tuple[Registry, PushedImage, ManagerProcess, Cluster, list[PeerProcess]],
    tmp_path: Path,
) -> None:
    server, image, manager, cluster, (a, b, c) = image_stack
    seed = cluster.peers[0]
    url = server.manifest_url(REPO, "v1")
    blob_urls = [server.blob_url(REPO, d) for d in image.blobs]
    creds = {"username": USER, "password": PASSWORD, "platform": "linux/amd64"}

    # peer-a pulls the config and the big layer, peer-b the big layer only
    for peer, wanted in ((a, blob_urls[:2]), (b, blob_urls[1:2])):
        for n, blob in enumerate(wanted):
            done = peer.get(blob, tmp_path / f"{peer.name}-{n}", "-H", BASIC)
            assert done.returncode == 0, done.stderr
    for n, digest in enumerate(image.blobs[:2]):
        assert "sha256:" + sha256_file(tmp_path / f"peer-a-{n}") == digest
    assert wait_for(lambda: len(cluster.scheduler.task_hosts(_task(server, image.blobs[1]))) >= 2)

    found = _job(manager, "get_image_distribution", {"url": url, **creds})
    assert found["state"] == "SUCCESS", found["error_log"]
    result = found["result"]
    assert [x["url"] for x in result["image"]["layers"]] == blob_urls
    assert result["image"]["platform"] == "linux/amd64"
    peers = {p["hostname"]: p for p in result["peers"]}
    assert set(peers) == {"peer-a", "peer-b"}, "seed peers are left out; peer-c has nothing"
    assert [x["url"] for x in peers["peer-a"]["cached_layers"]] == blob_urls[:2]
    assert peers["peer-a"]["percentage"] == 66.7 and peers["peer-b"]["percentage"] == 33.3
    share = image.sizes[image.blobs[1]] / sum(image.sizes.values())
    assert peers["peer-b"]["size_percentage"] == round(100 * share, 1)
    assert {p["scheduler_cluster_id"] for p in result["peers"]} == {1}

    # the CLI: the same search, password from the environment
    env = {"DAMSELFLY_REGISTRY_PASSWORD": PASSWORD}
    cli = run_damselfly(
        "task", "search", "--image-manifest-url", url, "--platform", "linux/amd64",
        "--username", USER, "--manager", manager.url, "--token", manager.root_token, env=env,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "3 blobs" in cli.stdout and "peer-a" in cli.stdout and "66.7%" in cli.stdout

    # preheat onto every peer: peer-c ends with every blob, bytes as pushed
    cli = run_damselfly(
        "preheat", "--image-manifest-url", url, "--platform", "linux/amd64", "--scope",
        "all_peers", "--username", USER, "--manager", manager.url, "--token",
        manager.root_token, env=env, timeout=180,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr + cli.stdout
    assert "preheated" in cli.stdout
    for digest in image.blobs:
        for peer in (seed, a, b, c):
            content = peer.content(_task(server, digest))
            assert content.exists(), (peer.name, digest)
        assert "sha256:" + sha256_file(c.content(_task(server, digest))) == digest
    found = _job(manager, "get_image_distribution", {"url": url, **creds})
    assert {p["hostname"]: p["percentage"] for p in found["result"]["peers"]} == {
        "peer-a": 100.0, "peer-b": 100.0, "peer-c": 100.0,
    }  # fmt: skip

    # delete every layer everywhere, reported per layer and per host
    cli = run_damselfly(
        "task", "delete", "--image-manifest-url", url, "--platform", "linux/amd64", "--yes",
        "--username", USER, "--manager", manager.url, "--token", manager.root_token, env=env,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr + cli.stdout
    assert "deleted every layer everywhere" in cli.stdout
    for digest in image.blobs:
        for peer in (seed, a, b, c):
            assert not peer.content(_task(server, digest)).exists(), (peer.name, digest)
    after = _job(manager, "get_image_distribution", {"url": url, **creds})
    assert after["state"] == "SUCCESS" and after["result"]["peers"] == []
    listed = manager.call("GET", "/api/v1/jobs?type=delete_task", token=manager.root_token)[1]
    [cluster_result] = listed[0]["result"]["clusters"]
    assert [x["url"] for x in cluster_result["layers"]] == blob_urls
    for entry in cluster_result["layers"]:
        assert {h["hostname"] for h in entry["success_tasks"]} == {
            "seed",
            "peer-a",
            "peer-b",
            "peer-c",
        }
    assert {(h["hostname"], h["url"]) for h in cluster_result["success_tasks"]} == {
        (p, u) for p in ("seed", "peer-a", "peer-b", "peer-c") for u in blob_urls
    }
    assert listed[0]["args"]["password"] == "******"


def test_image_job_errors_say_what_to_fix(
    image_stack: tuple[Registry, PushedImage, ManagerProcess, Cluster, list[PeerProcess]],
) -> None:
    server, _, manager, _, _ = image_stack
    url = server.manifest_url(REPO, "v1")
    cases = [
        ({"url": url}, "RegistryUnauthorized", "wants credentials"),
        ({"url": url, "username": USER, "password": "nope"}, "RegistryUnauthorized", "refused"),
        (
            {"url": url, "username": USER, "password": PASSWORD, "platform": "windows/amd64"},
            "PlatformNotFound",
            "linux/amd64, linux/arm64",
        ),
        (
            {"url": server.manifest_url(REPO, "v9"), "username": USER, "password": PASSWORD},
            "ManifestUnknown",
            "v9",
        ),
    ]
    for args, code, words in cases:
        job = _job(manager, "get_image_distribution", args)
        assert job["state"] == "FAILURE", args
        assert code in job["error_log"] and words in job["error_log"], job["error_log"]
    failed = _job(
        manager, "preheat", {"type": "image", "url": url, "username": USER, "password": "x"}
    )
    assert failed["state"] == "FAILURE" and "RegistryUnauthorized" in failed["error_log"]

    token = manager.root_token
    for type_, args, words in [
        ("get_image_distribution", {"url": "http://r/v2/a/blobs/x"}, "manifests/<tag"),
        ("get_image_distribution", {"url": url, "platform": "linux"}, "os/arch"),
        ("get_image_distribution", {"url": url, "username": USER}, "username and password"),
        ("delete_task", {"image_manifest_url": "nope"}, "not an http(s) URL"),
        ("preheat", {"type": "image", "url": url, "scope": "all"}, "scope"),
    ]:
        status, answer = manager.call("POST", "/api/v1/jobs", {"type": type_, "args": args}, token)
        assert status == 422 and words in answer["message"], (args, answer)

    # the CLI: one line and a non-zero exit, never a traceback
    cli = run_damselfly(
        "task", "search", "--image-manifest-url", url, "--username", USER, "--manager",
        manager.url, "--token", token, env={"DAMSELFLY_REGISTRY_PASSWORD": "nope"},
    )  # fmt: skip
    assert cli.returncode == 1 and "refused" in cli.stderr and "Traceback" not in cli.stderr
    cli = run_damselfly(
        "task", "search", "--image-manifest-url", url, "--username", USER, "--manager",
        manager.url, "--token", token, env={"DAMSELFLY_REGISTRY_PASSWORD": "", "CI": "1"},
    )  # fmt: skip
    assert cli.returncode == 1 and "DAMSELFLY_REGISTRY_PASSWORD" in cli.stderr
