"""Outbound allow/deny lists: origins (through the peer), webhooks; and credentials
kept out of logs and job views."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly.errors import OutboundDenied
from damselfly.logs import EventLog
from damselfly.manager.secrets import masked
from damselfly.media.notify import Notifier
from damselfly.netpolicy import OutboundPolicy, pool_manager
from damselfly.redact import redact
from tests.support.cluster import Cluster
from tests.support.processes import OriginProcess, sha256_file, write_random


@pytest.mark.parametrize(
    ("flags", "allowed"),
    [
        (("--outbound-deny", "127.0.0.0/8"), False),
        (("--outbound-allow", "10.0.0.0/8"), False),
        (("--outbound-allow", "127.0.0.1/32", "--outbound-deny", "127.0.0.2"), True),
        (("--outbound-allow", "127.0.0.0/8", "--outbound-deny", "127.0.0.1"), False),
    ],
)
def test_the_peer_fetches_only_where_its_policy_allows(
    cluster: Cluster, origin: OriginProcess, tmp_path: Path, flags: tuple[str, ...], allowed: bool
) -> None:
    digest = write_random(origin.root / "outbound.bin", 1 << 20, seed=9)
    cluster.start_scheduler()
    peer = cluster.start_peer("p", *flags)
    # by name too: the check is on the address the socket reached, after DNS
    for host in ("127.0.0.1", "localhost"):
        url = origin.url("/files/outbound.bin").replace("127.0.0.1", host)
        out = tmp_path / f"out-{host}"
        result = peer.get(url, out)
        if allowed:
            assert result.returncode == 0, result.stderr
            assert sha256_file(out) == digest
        else:
            assert result.returncode != 0 and not out.exists()
            [line] = result.stderr.strip().splitlines()
            assert "refused by this host's outbound policy" in line and "127.0.0.1" in line, line


class _Hook(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.calls.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_honour_the_policy(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    log = EventLog(tmp_path, "media")
    view = {"task_id": "t1", "status": "FINISH", "run": 1, "subtasks": [],
            "request": {"notify": {"url": url}}}  # fmt: skip
    try:
        for policy, delivered in [(OutboundPolicy.parse(deny=["127.0.0.0/8"]), 0),
                                  (OutboundPolicy(), 1)]:  # fmt: skip
            _Hook.calls.clear()
            notifier = Notifier("k", log, lambda _: "", policy)
            notifier._send(view["request"]["notify"], "task_finished", view)
            notifier.close()
            assert len(_Hook.calls) == delivered
        text = (tmp_path / "media.log").read_text()
        assert "webhook refused" in text and "outbound deny list" in text
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_connection_is_closed_and_names_the_host() -> None:
    http = pool_manager(OutboundPolicy.parse(allow=["192.0.2.0/24"]))
    with pytest.raises(OutboundDenied, match=r"localhost.*127\.0\.0\.1 is on no network"):
        http.request("GET", "http://localhost:9/", retries=False)


SECRET_PARAMS = ["X-Amz-Signature", "token", "access_token", "sig", "Signature",
                 "X-Goog-Credential", "password"]  # fmt: skip


@given(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.~!$&'()*+,;=%", min_size=4, max_size=30),
    st.sampled_from(SECRET_PARAMS),
)
def test_urls_lose_their_secrets(secret: str, param: str) -> None:
    secret = secret.replace("&", "").replace("#", "").replace("@", "") or "s3cret"
    for url in (f"https://user:{secret}x@origin.example/a.tar",
                f"https://origin.example/a.tar?{param}={secret}x&part=1"):  # fmt: skip
        shown = redact(f"fetch {url} failed")
        assert f"{secret}x" not in shown and "******" in shown
        assert "origin.example/a.tar" in shown
    assert redact("https://origin.example/a.tar?part=1") == "https://origin.example/a.tar?part=1"


def test_job_views_and_logs_hide_url_credentials(tmp_path: Path) -> None:
    args = {"url": "https://bob:hunter2@origin.example/f?X-Amz-Signature=abc", "urls": [
        "https://origin.example/g?token=xyz"]}  # fmt: skip
    shown = masked(args)
    assert "hunter2" not in str(shown) and "abc" not in str(shown) and "xyz" not in str(shown)
    log = EventLog(tmp_path, "peer")
    log.info("download task started", url=args["url"])
    log.close()
    text = (tmp_path / "peer.log").read_text()
    assert "hunter2" not in text and "bob:******@origin.example/f" in text
