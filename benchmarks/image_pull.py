"""An image pulled by several hosts: straight from the registry vs preheated through damselfly.

A real distribution registry behind a bearer-token realm, with its uplink capped by a
relay (a registry's shared bandwidth); one image of `--layers` layers. Baseline: each
of `--clients` hosts pulls every layer from the registry with curl (token fetched once,
layers side by side, as `docker pull` does). damselfly: `preheat` puts the image on the
seed peer, then every peer `get`s every layer at once. Also times image search
(get_image_distribution) and delete by image manifest URL.

Run: ./dev bench image_pull [--clients 4] [--layers 6] [--layer-mib 32] [--rate 100MB]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.cluster import wait_for
from tests.support.manager import start_stack
from tests.support.processes import stop
from tests.support.registry import PASSWORD, USER, Registry, layer, push_image

from benchmarks.jobs_fanout import timed_job
from benchmarks.p2p_vs_curl import start_relay
from damselfly.peer.daemon_client import DaemonClient
from damselfly.peer.request import DownloadRequest
from damselfly.units import format_size


def pull_with_curl(urls: list[str], token: str, outdir: Path, clients: int) -> float:
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "curl",
                "-sSfL",
                "-H",
                f"Authorization: Bearer {token}",
                "-o",
                str(outdir / f"{c}-{n}"),
                url,
            ]
        )
        for c in range(clients)
        for n, url in enumerate(urls)
    ]
    for p in procs:
        if p.wait(3600) != 0:
            raise SystemExit("curl failed")
    return time.perf_counter() - started


def pull_through_daemons(peers: list, urls: list[str], headers: dict[str, str]) -> float:
    """Every peer fetches every layer at once through its daemon's local API (what a
    runtime integration calls; `damselfly get` adds a Python start per layer)."""
    requests = [(p, DownloadRequest(url=u, headers=headers)) for p in peers for u in urls]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = pool.map(
            lambda r: DaemonClient(r[0].socket, 600).download(r[1], lambda _: None), requests
        )
        assert all(r.content_length > 0 for r in results)
    return time.perf_counter() - started


def source_bytes(log: str) -> int:
    return sum(int(m) for m in re.findall(r'source_bytes="?(\d+)', log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--layer-mib", type=int, default=32)
    parser.add_argument("--rate", default="100MB", help="the registry's uplink cap")
    parser.add_argument("--json", default="artifacts/bench-image-pull.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="damselfly-image-"))
    registry = Registry("token", root / "registry").start()
    relay = None
    manager = cluster = None
    try:
        layers = [layer(args.layer_mib << 20, seed=100 + n) for n in range(args.layers)]
        image = push_image(registry, "bench/app", "v1", layers)
        size = sum(image.sizes.values())
        relay, relay_port = start_relay(registry.port, args.rate)
        base = f"http://127.0.0.1:{relay_port}"
        manifest = f"{base}/v2/bench/app/manifests/v1"
        blob_urls = [f"{base}/v2/bench/app/blobs/{d}" for d in image.blobs]
        assert registry.tokens is not None
        token = registry.tokens.issue(USER, ["repository:bench/app:pull"])

        baseline = pull_with_curl(blob_urls, token, root / "curl", args.clients)
        print(f"curl, {args.clients} hosts from the registry: {baseline:.2f}s "
              f"({format_size(size * args.clients)} from the registry)")  # fmt: skip

        manager, cluster, _ = start_stack(root / "stack")
        cluster.start_peer("seed", seed=True)
        peers = [cluster.start_peer(f"peer-{n}") for n in range(args.clients)]
        assert wait_for(lambda: len(cluster.scheduler.host_ids()) == args.clients + 1)
        creds = {"username": USER, "password": PASSWORD}
        preheat, job = timed_job(
            manager, {"type": "preheat", "args": {"type": "image", "url": manifest, **creds}}
        )
        assert job["state"] == "SUCCESS", job["error_log"]
        print(f"preheat onto the seed peer: {preheat:.2f}s")

        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        pulled = pull_through_daemons(peers, blob_urls, {"Authorization": basic})
        from_registry = sum(source_bytes(p.log()) for p in cluster.peers)
        print(f"damselfly, {args.clients} peers after preheat (daemon API): {pulled:.2f}s "
              f"({format_size(from_registry)} from the registry)")  # fmt: skip

        search, job = timed_job(manager, {"type": "get_image_distribution",
                                          "args": {"url": manifest, **creds}})  # fmt: skip
        assert job["state"] == "SUCCESS" and len(job["result"]["peers"]) == args.clients
        delete, job = timed_job(manager, {"type": "delete_task", "args": {
            "image_manifest_url": manifest, **creds}})  # fmt: skip
        assert job["state"] == "SUCCESS", job["error_log"]
        deleted = sum(len(c["success_tasks"]) for c in job["result"]["clusters"])
        print(f"image search: {search * 1000:.0f} ms; delete by manifest URL: "
              f"{delete * 1000:.0f} ms ({deleted} layer copies)")  # fmt: skip
        figures = {
            "image_bytes": size,
            "clients": args.clients,
            "rate": args.rate,
            "curl_seconds": baseline,
            "preheat_seconds": preheat,
            "pull_after_preheat_seconds": pulled,
            "speedup_after_preheat": baseline / pulled,
            "speedup_cold_including_preheat": baseline / (preheat + pulled),
            "registry_bytes_curl": size * args.clients,
            "registry_bytes_damselfly": from_registry,
            "search_seconds": search,
            "delete_seconds": delete,
        }
        print(json.dumps(figures, indent=2))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        if manager is not None:
            manager.stop()
        if cluster is not None:
            cluster.close()
        if relay is not None:
            stop(relay)
        registry.close()


if __name__ == "__main__":
    main()
