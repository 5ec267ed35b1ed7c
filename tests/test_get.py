"""`damselfly get` end to end: a real origin process, the real CLI, bytes checked."""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damselfly import ids
from tests.support.processes import (
    OriginProcess,
    run_damselfly,
    sha256_file,
    start_damselfly,
    stop,
    write_random,
)

MiB = 1024 * 1024
BAR = re.compile(r"\[\d\d:\d\d:\d\d\] \[={60}\] 100% \([\d.]+ \w+/s, [\d.]+s\)")


def serve(origin: OriginProcess, name: str, size: int, seed: int = 1) -> str:
    return write_random(origin.root / name, size, seed)


def get(url: str, output: Path, data_dir: Path, *args: str, timeout: float = 120):
    return run_damselfly("get", url, "-O", str(output), *args, data_dir=data_dir, timeout=timeout)


def assert_failed_cleanly(result: subprocess.CompletedProcess, output: Path, says: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert not list(output.parent.glob(".*.damselfly-*")), "temporary output left behind"


def piece_rows(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "metadata.db", timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM pieces").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_download_is_exact_hardlinked_and_shows_the_bar(origin, data_dir, tmp_path) -> None:
    digest = serve(origin, "basic.bin", 21 * MiB + 7)
    out = tmp_path / "out.bin"
    result = get(origin.url("/files/basic.bin"), out, data_dir)
    assert result.returncode == 0, result.stderr
    assert sha256_file(out) == digest
    assert out.stat().st_nlink == 2  # the output is the cached content, not a copy
    assert BAR.search(result.stderr), result.stderr
    assert result.stdout == ""
    task_id = ids.task_id(ids.TaskIdentity(url=origin.url("/files/basic.bin")))
    content = data_dir / "content" / "tasks" / task_id[:3] / task_id
    assert content.stat().st_ino == out.stat().st_ino


def test_second_get_is_served_from_the_store(origin, data_dir, tmp_path) -> None:
    digest = serve(origin, "again.bin", 9 * MiB)
    url = origin.url("/files/again.bin")
    assert get(url, tmp_path / "a", data_dir).returncode == 0
    before = origin.requests_to("/files/again.bin")
    started = time.monotonic()
    result = get(url, tmp_path / "b", data_dir, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert origin.requests_to("/files/again.bin") == before, "the origin was asked again"
    assert sha256_file(tmp_path / "b") == digest
    assert time.monotonic() - started < 10


def test_log_recipe_finds_the_task(origin, data_dir, tmp_path) -> None:
    serve(origin, "logged.bin", 5 * MiB)
    url = origin.url("/files/logged.bin")
    assert get(url, tmp_path / "o", data_dir).returncode == 0
    logs = data_dir / "logs"
    script = (
        f'export TASK_ID=$(grep "{url}" {logs}/* | grep -o \'task_id="[^"]*"\')\n'
        f"grep \"$TASK_ID\" {logs}/* | grep 'download task succeeded'\n"
    )
    found = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert found.returncode == 0, found.stderr
    task_id = ids.task_id(ids.TaskIdentity(url=url))
    line = found.stdout.strip().splitlines()[0]
    assert f'task_id="{task_id}"' in line and f'url="{url}"' in line
    assert 'host_id="' in line and 'peer_id="' in line


def test_tag_and_application_make_another_task(origin, data_dir, tmp_path) -> None:
    serve(origin, "tagged.bin", 4 * MiB)
    url = origin.url("/files/tagged.bin")
    assert get(url, tmp_path / "a", data_dir).returncode == 0
    before = origin.requests_to("/files/tagged.bin")
    assert get(url, tmp_path / "b", data_dir, "--tag", "v2", "--application", "ci").returncode == 0
    assert origin.requests_to("/files/tagged.bin") > before


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/norange/{}", "norange.bin"),
        ("/chunked/{}", "chunked.bin"),
        ("/nohead/{}", "nohead.bin"),
        ("/redirect/{}", "redirect.bin"),
        ("/flaky/2/{}", "flaky.bin"),
        ("/reset/{}", "reset.bin"),
    ],
)
def test_awkward_origins_still_give_exact_bytes(origin, data_dir, tmp_path, path, name) -> None:
    digest = serve(origin, name, 13 * MiB + 5, seed=len(name))
    out = tmp_path / "out"
    result = get(origin.url(path.format(name)), out, data_dir)
    assert result.returncode == 0, result.stderr
    assert sha256_file(out) == digest


def test_empty_file(origin, data_dir, tmp_path) -> None:
    (origin.root / "empty.bin").write_bytes(b"")
    out = tmp_path / "empty"
    result = get(origin.url("/files/empty.bin"), out, data_dir)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b""


def test_user_headers_reach_the_origin(origin, data_dir, tmp_path) -> None:
    digest = serve(origin, "secret.bin", 2 * MiB)
    url = origin.url("/auth/secret.bin")
    denied = get(url, tmp_path / "x", data_dir)
    assert_failed_cleanly(denied, tmp_path / "x", "401")
    assert "header: WWW-Authenticate: Bearer" in denied.stderr
    ok = get(url, tmp_path / "y", data_dir, "-H", "Authorization: Bearer let-me-in")
    assert ok.returncode == 0, ok.stderr
    assert sha256_file(tmp_path / "y") == digest


def test_digest_verifies_and_mismatch_leaves_no_output(origin, data_dir, tmp_path) -> None:
    digest = serve(origin, "digest.bin", 3 * MiB)
    url = origin.url("/files/digest.bin")
    good = get(url, tmp_path / "good", data_dir, "--digest", f"sha256:{digest}")
    assert good.returncode == 0, good.stderr
    bad = get(url, tmp_path / "bad", data_dir, "--digest", "sha256:" + "0" * 64)
    assert_failed_cleanly(bad, tmp_path / "bad", "digest mismatch")


def test_existing_output_needs_overwrite(origin, data_dir, tmp_path) -> None:
    digest = serve(origin, "over.bin", 1 * MiB)
    out = tmp_path / "exists"
    out.write_bytes(b"keep me")
    refused = get(origin.url("/files/over.bin"), out, data_dir)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert out.read_bytes() == b"keep me"
    replaced = get(origin.url("/files/over.bin"), out, data_dir, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert sha256_file(out) == digest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "args", "says"),
    [
        ("not a url", [], "malformed URL"),
        ("ftp://127.0.0.1/file", [], "unsupported scheme 'ftp'"),
        ("{origin}/status/404", [], "404"),
        ("{origin}/status/403", [], "403"),
        ("{origin}/status/500", [], "500"),
        ("{origin}/files/x.bin", ["--piece-length", "1MiB"], "under the minimum of 4 MiB"),
        ("{origin}/files/x.bin", ["--digest", "sha256:nothex"], "invalid digest"),
        ("{origin}/files/x.bin", ["--digest", "md5:abcd"], "invalid digest"),
        ("{origin}/files/x.bin", ["-H", "no colon"], "invalid header"),
        ("{origin}/files/x.bin", ["--timeout", "soon"], "invalid duration"),
        ("{origin}/files/missing.bin", [], "404"),
    ],
)
def test_bad_input_fails_in_one_line(origin, data_dir, tmp_path, url, args, says) -> None:
    url = url.format(origin=origin.url(""))
    out = tmp_path / "out"
    result = get(url, out, data_dir, *args)
    assert_failed_cleanly(result, out, says)


def test_origin_errors_show_status_and_headers(origin, data_dir, tmp_path) -> None:
    result = get(origin.url("/status/404"), tmp_path / "o", data_dir)
    assert "status: 404 Not Found" in result.stderr
    assert "header: X-Request-Id: test-request" in result.stderr


def test_refused_connection(data_dir, tmp_path) -> None:
    out = tmp_path / "o"
    result = get(f"http://127.0.0.1:{_closed_port()}/f", out, data_dir)
    assert_failed_cleanly(result, out, "cannot connect to 127.0.0.1")


def test_missing_output_directory(origin, data_dir, tmp_path) -> None:
    out = tmp_path / "nowhere" / "o"
    result = get(origin.url("/files/x.bin"), out, data_dir)
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert origin.requests_to("/files/x.bin") == 0


def test_timeout_keeps_pieces_and_says_so(origin, data_dir, tmp_path) -> None:
    serve(origin, "timeout.bin", 8 * MiB)
    out = tmp_path / "o"
    result = get(origin.url("/slow/512/timeout.bin"), out, data_dir, "--timeout", "1s")
    assert_failed_cleanly(result, out, "timed out after 1s")


def test_disable_back_to_source(origin, data_dir, tmp_path) -> None:
    digest = serve(origin, "nobts.bin", 1 * MiB)
    url = origin.url("/files/nobts.bin")
    refused = get(url, tmp_path / "a", data_dir, "--disable-back-to-source")
    assert_failed_cleanly(refused, tmp_path / "a", "back-to-source is disabled")
    assert origin.requests_to("/files/nobts.bin") == 0
    assert get(url, tmp_path / "b", data_dir).returncode == 0
    cached = get(url, tmp_path / "c", data_dir, "--disable-back-to-source")
    assert cached.returncode == 0 and sha256_file(tmp_path / "c") == digest


def test_concurrent_gets_of_one_task_fetch_it_once(origin, data_dir, tmp_path) -> None:
    size = 16 * MiB
    digest = serve(origin, "together.bin", size)
    url = origin.url("/slow/8192/together.bin")
    procs = [
        start_damselfly(
            "get", url, "-O", str(tmp_path / f"o{i}"), "--no-progress", data_dir=data_dir
        )
        for i in range(3)
    ]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    for i in range(3):
        assert sha256_file(tmp_path / f"o{i}") == digest
    assert origin.stats()["body_bytes"]["/slow/8192/together.bin"] <= size + 1


def kill_after_pieces(url: str, out: Path, data_dir: Path, pieces: int = 2) -> int:
    """Start a get, SIGKILL it once `pieces` pieces are recorded; pieces recorded."""
    first = start_damselfly(
        "get", url, "-O", str(out), "--concurrency", "2", "--no-progress", data_dir=data_dir
    )
    try:
        deadline = time.monotonic() + 60
        while piece_rows(data_dir) < pieces and time.monotonic() < deadline:
            assert first.poll() is None, "finished before it could be killed"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop(first)
    assert not out.exists()
    return piece_rows(data_dir)


def test_sigkill_then_rerun_resumes_from_finished_pieces(origin, data_dir, tmp_path) -> None:
    size = 32 * MiB
    digest = serve(origin, "resume.bin", size)
    url = origin.url("/slow/4096/resume.bin")
    out = tmp_path / "o"
    finished = kill_after_pieces(url, out, data_dir)
    assert finished >= 2
    sent_before = origin.stats()["body_bytes"]["/slow/4096/resume.bin"]

    again = get(url, out, data_dir, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert sha256_file(out) == digest
    sent_again = origin.stats()["body_bytes"]["/slow/4096/resume.bin"] - sent_before
    assert sent_again <= size - finished * 4 * MiB, "finished pieces were fetched again"
    log = (data_dir / "logs" / "peer.log").read_text()
    assert "resuming task" in log


def test_corrupted_piece_is_refetched_on_resume(origin, data_dir, tmp_path) -> None:
    size = 24 * MiB
    digest = serve(origin, "corrupt.bin", size)
    url = origin.url("/slow/4096/corrupt.bin")
    out = tmp_path / "o"
    assert kill_after_pieces(url, out, data_dir) >= 2
    task_id = ids.task_id(ids.TaskIdentity(url=url))
    with sqlite3.connect(data_dir / "metadata.db") as conn:
        offset = conn.execute(
            'SELECT "offset" FROM pieces WHERE task_id = ? LIMIT 1', (task_id,)
        ).fetchone()[0]
    content = data_dir / "content" / "tasks" / task_id[:3] / task_id
    with content.open("r+b") as f:
        f.seek(offset + 100)
        f.write(b"garbage!")
    again = get(url, out, data_dir, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert sha256_file(out) == digest


def test_https_origin_with_ca(tmp_path, data_dir) -> None:
    trustme = pytest.importorskip("trustme")
    from tests.support.processes import start_origin

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(cert_pem), append=True)
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    root = tmp_path / "root"
    root.mkdir()
    digest = write_random(root / "tls.bin", 6 * MiB)
    server = start_origin(root, tls=(cert_pem, key_pem))
    try:
        url = server.url("/files/tls.bin")
        untrusted = get(url, tmp_path / "a", data_dir)
        assert_failed_cleanly(untrusted, tmp_path / "a", "TLS verification failed")
        ok = get(url, tmp_path / "b", data_dir, "--ca-cert", str(ca_pem))
        assert ok.returncode == 0, ok.stderr
        assert sha256_file(tmp_path / "b") == digest
    finally:
        stop(server.process)


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_gc_makes_room_then_fails_clearly(origin, small_disk, tmp_path) -> None:
    data = small_disk / "data"
    a = serve(origin, "disk-a.bin", 9 * MiB, seed=11)
    b = serve(origin, "disk-b.bin", 9 * MiB, seed=12)
    serve(origin, "disk-c.bin", 20 * MiB, seed=13)
    # outputs live elsewhere (copies across file systems), so the store can be evicted
    assert get(origin.url("/files/disk-a.bin"), tmp_path / "a", data).returncode == 0
    got_b = get(origin.url("/files/disk-b.bin"), tmp_path / "b", data)
    assert got_b.returncode == 0, got_b.stderr
    assert sha256_file(tmp_path / "a") == a and sha256_file(tmp_path / "b") == b
    assert "disk full, garbage collected" in (data / "logs" / "peer.log").read_text()
    too_big = get(origin.url("/files/disk-c.bin"), tmp_path / "c", data)
    assert_failed_cleanly(too_big, tmp_path / "c", "no space left")
    again = get(origin.url("/files/disk-b.bin"), tmp_path / "b2", data)
    assert again.returncode == 0 and sha256_file(tmp_path / "b2") == b


def test_output_on_another_file_system_is_copied(origin, small_disk, data_dir) -> None:
    digest = serve(origin, "copy.bin", 2 * MiB)
    out = small_disk / "copy.bin"
    result = get(origin.url("/files/copy.bin"), out, data_dir)
    assert result.returncode == 0, result.stderr
    assert sha256_file(out) == digest and out.stat().st_nlink == 1


def test_nginx_origin(tmp_path, data_dir) -> None:
    from tests.support.nginx import Nginx

    nginx = Nginx.start(tmp_path / "nginx")
    try:
        digest = write_random(nginx.root / "n.bin", 40 * MiB + 1)
        out = tmp_path / "n.out"
        result = get(nginx.url("/n.bin"), out, data_dir)
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == digest
        assert nginx.bytes_sent("/n.bin") == 40 * MiB + 1
    finally:
        nginx.stop()


def test_pieces_share_keep_alive_connections(tmp_path, data_dir) -> None:
    from tests.support.nginx import Nginx

    nginx = Nginx.start(tmp_path / "nginx")
    try:
        digest = write_random(nginx.root / "k.bin", 40 * MiB)
        out = tmp_path / "k.out"
        result = get(nginx.url("/k.bin"), out, data_dir, "--concurrency", "1")
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == digest
        requests, connections = nginx.connections("/k.bin")
    finally:
        nginx.stop()
    # a HEAD and 10 ranged GETs; a new connection per piece cost 40% of a 1 GiB get
    assert requests == 11
    assert connections == 1


def test_ctrl_c_stops_promptly_keeps_pieces_and_says_so(origin, data_dir, tmp_path) -> None:
    serve(origin, "interrupt.bin", 16 * MiB)
    url = origin.url("/slow/256/interrupt.bin")
    out = tmp_path / "o"
    process = start_damselfly("get", url, "-O", str(out), "--no-progress", data_dir=data_dir)
    log = data_dir / "logs" / "peer.log"
    try:
        # once the download runs: a SIGINT during interpreter start-up is another story
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            log.exists() and "download task started" in log.read_text()
        ):
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=30)
    finally:
        stop(process)
    assert process.returncode == 130
    assert time.monotonic() - started < 10
    assert stderr.startswith("error: interrupted") and "Traceback" not in stderr
    assert not out.exists()
    text = log.read_text()
    assert "download task failed" in text and 'error="interrupted"' in text


def test_get_starts_without_heavy_imports(origin, data_dir, tmp_path) -> None:
    """Start-up is a sixth of a 1 GiB get: Typer 0.29 built a pydantic adapter per
    option (+0.2 s), and the web stack has no business in a download."""
    url = origin.url("/files/light.bin")
    serve(origin, "light.bin", 64 * 1024)
    output = tmp_path / "light.bin"
    cmd = [sys.executable, "-X", "importtime", "-m", "damselfly", "get", url, "-O", str(output)]
    result = subprocess.run(
        [*cmd, "--no-progress", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "damselfly.peer.fetch" in imported  # the download did happen in this process
    heavy = {"pydantic", "fastapi", "starlette", "sqlalchemy", "aiohttp", "av", "jinja2"}
    assert not heavy & imported
