"""The console in a real headless Chromium against a real `damselfly serve`, with real
peers holding real tasks and real media tasks. Screenshots: artifacts/screenshots/."""

from __future__ import annotations

import hashlib
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly import ids
from tests.support import browser
from tests.support.cluster import http_json, spawn_service, wait_for, wait_ready
from tests.support.media import MOVING, make_clip
from tests.support.processes import OriginProcess, run_damselfly, stop, write_random

pytestmark = pytest.mark.skipif(not browser.available(), reason="needs chromium + playwright")
PASSWORD_RE = re.compile(r"created user root with password (\S+)")


@dataclass
class Stack:
    api: str
    data: Path
    password: str
    token: str
    scheduler: str
    peers: list
    process: object

    def call(self, method: str, path: str, body: object = None, token: str | None = None):
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return http_json(method, self.api + path, body, headers=headers)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, origin: OriginProcess) -> Iterator[Stack]:
    """serve (manager, scheduler, seed peer, 1 media worker) and two more peers."""
    root = tmp_path_factory.mktemp("console")
    data = root / "data"
    process = spawn_service(
        ["serve", "--data-dir", str(data), "--port", "0", "--scheduler-port", "0",
         "--media-workers", "1"], data,
    )  # fmt: skip
    peers = []
    try:
        api = wait_ready(process, r"API: (http://[\d.]+:\d+)/api/v1", data / "stderr.log").group(1)
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        scheduler = re.search(r"scheduler (http://\S+)", "".join(lines)).group(1)  # type: ignore[union-attr]
        password = next(PASSWORD_RE.search(x).group(1) for x in lines if PASSWORD_RE.search(x))  # type: ignore[union-attr]
        token = (data / "manager" / "root-token").read_text().strip()
        for name in ("edge-a", "edge-b"):
            peer = spawn_service(
                ["peer", "--scheduler", scheduler, "--data-dir", str(root / name), "--hostname",
                 name, "--ip", "127.0.0.1", "--listen", "127.0.0.1", "--heartbeat-interval", "0.5"],
                root / name,
            )  # fmt: skip
            wait_ready(peer, r"ready: upload", root / name / "stderr.log")
            peers.append((name, peer, root / name))
        yield Stack(api, data, password, token, scheduler, peers, process)
    finally:
        for _, peer, _ in peers:
            stop(peer)
        stop(process)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with browser.chromium() as instance:
        yield instance


def _page(chromium: object, stack: Stack, user: str = "root", password: str | None = None,
          width: int = 1280):  # fmt: skip
    context = chromium.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(stack.api + "/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password or stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/tasks$"))
    return page


def _search(page) -> None:
    """Press Search and wait for this search's results (not the previous ones)."""
    before = page.evaluate("document.querySelector('#results').dataset.job || ''")
    page.get_by_role("button", name="Search").click()
    page.wait_for_function(
        f"""() => {{ const r = document.querySelector('#results');
        return (r.dataset.job || r.querySelector('.error')) && r.dataset.job !== '{before}'
        && r.dataset.state !== 'PENDING'; }}"""
    )


def _cached_everywhere(stack: Stack, origin: OriginProcess, tmp_path: Path, name: str) -> str:
    write_random(origin.root / name, 5 << 20, seed=len(name))
    url = origin.url(f"/files/{name}")
    for data_dir in [stack.data, *(d for _, _, d in stack.peers)]:
        got = run_damselfly("get", url, "-O", str(tmp_path / f"{data_dir.name}-{name}"),
                            "--no-progress", "--data-dir", str(data_dir))  # fmt: skip
        assert got.returncode == 0, got.stderr
    task_id = ids.task_id(ids.TaskIdentity(url=url))

    def three() -> bool:
        job = stack.call("POST", "/api/v1/jobs", {"type": "get_task", "args": {"url": url}})[1]
        assert wait_for(lambda: stack.call("GET", f"/api/v1/jobs/{job['id']}")[1]["state"]
                        != "PENDING", timeout=10)  # fmt: skip
        done = stack.call("GET", f"/api/v1/jobs/{job['id']}")[1]
        return len(done["result"]["clusters"][0]["peers"]) == 3

    assert wait_for(three, timeout=15)
    return task_id


def test_search_modes_results_and_empty_state(
    chromium: object, stack: Stack, origin: OriginProcess, tmp_path: Path
) -> None:
    task_id = _cached_everywhere(stack, origin, tmp_path, "console-search.bin")
    url = origin.url("/files/console-search.bin")
    page = _page(chromium, stack)
    started = time.monotonic()
    page.get_by_role("textbox", name="URL", exact=True).fill(url)
    _search(page)
    card = page.get_by_role("article", name="Scheduler cluster 1")
    assert time.monotonic() - started < 5
    rows = card.locator("tbody tr")
    assert rows.count() == 3
    hosts = {rows.nth(i).locator("td").first.inner_text() for i in range(3)}
    assert {"edge-a", "edge-b"} <= hosts
    assert "super" in card.inner_text() and task_id in page.content()
    browser.shot(page, "search-url")

    page.get_by_role("radio", name="Task ID", exact=True).check()
    page.locator("input[name=task_id]").fill(task_id)
    _search(page)
    assert page.get_by_role("article", name="Scheduler cluster 1").locator("tbody tr").count() == 3

    page.get_by_role("radio", name="Content for calculating task ID").check()
    page.locator("input[name=content]").fill("nothing has this")
    _search(page)
    assert page.get_by_text("No peer caches this task.").is_visible()
    browser.shot(page, "search-empty")

    # validation as upstream: a bad task ID gets a clear message, not a job
    page.get_by_role("radio", name="Task ID", exact=True).check()
    page.locator("input[name=task_id]").evaluate("el => el.removeAttribute('pattern')")
    page.locator("input[name=task_id]").fill("xyz")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("alert").wait_for()
    assert "64 lowercase hex" in page.get_by_role("alert").inner_text()


def test_delete_needs_typed_confirmation_and_reports_a_stopped_peer(
    chromium: object, stack: Stack, origin: OriginProcess, tmp_path: Path
) -> None:
    task_id = _cached_everywhere(stack, origin, tmp_path, "console-delete.bin")
    page = _page(chromium, stack)
    page.locator("input[name=url]").first.fill(origin.url("/files/console-delete.bin"))
    page.get_by_role("button", name="Search").click()
    page.get_by_role("article", name="Scheduler cluster 1").wait_for()
    _, stopped, _ = stack.peers[1]
    stopped.send_signal(signal.SIGSTOP)
    try:
        page.get_by_role("button", name="DELETE").click()
        dialog = page.get_by_role("dialog")
        confirm = dialog.get_by_role("button", name="Delete")
        assert confirm.is_disabled()
        dialog.get_by_label("Confirmation").fill("delete")
        assert confirm.is_disabled()
        dialog.get_by_label("Confirmation").fill("DELETE")
        browser.shot(page, "delete-dialog")
        confirm.click()
        page.wait_for_url(re.compile(r"/console/executions/\d+$"))
        page.get_by_text("PENDING").first.wait_for()
        browser.shot(page, "execution-pending")
        page.locator("#failures").wait_for(timeout=30_000)  # appears when the run ends, live
    finally:
        stopped.send_signal(signal.SIGCONT)
    assert "SUCCESS" in page.locator("#execution").inner_text()
    failures = page.locator("#failures tbody tr")
    assert failures.count() == 1 and "edge-b" in failures.first.inner_text()
    failures.first.get_by_text("Description").click()
    assert (
        "did not answer" in failures.first.inner_text()
        or "timed out" in failures.first.inner_text()
    )
    browser.shot(page, "execution-detail")
    assert not any((stack.data / "content").rglob(task_id))

    page.get_by_role("link", name="Executions").first.click()
    page.get_by_role("link", name="Success").click()
    assert page.locator("#executions tbody tr").count() >= 1
    browser.shot(page, "executions")


def test_executions_update_live(chromium: object, stack: Stack, origin: OriginProcess) -> None:
    page = _page(chromium, stack)
    page.goto(stack.api + "/console/executions")
    before = page.locator("#executions tbody tr").count()
    url = origin.url("/files/never-cached.bin")
    stack.call("POST", "/api/v1/jobs", {"type": "delete_task", "args": {"url": url}})
    page.wait_for_function(
        f"document.querySelectorAll('#executions tbody tr').length > {before}", timeout=10_000
    )  # no reload: the server-sent event made the table re-read itself


def test_media_task_from_the_form_to_playback_and_download(
    chromium: object, stack: Stack, tmp_path: Path
) -> None:
    clip = make_clip(stack.data / "media" / "input" / "console-clip.mp4")
    page = _page(chromium, stack)
    page.get_by_role("link", name="Media tasks").click()
    page.locator("details.card").evaluate("d => d.open = true")
    page.get_by_label("File on the server").check()
    page.get_by_label("Path under an input root").fill("console-clip.mp4")
    page.get_by_label("Snapshots at").fill("1s 50%")
    page.get_by_label("Content understanding").check()
    browser.shot(page, "media-create")
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/console/media/tasks/mt-"))
    task_id = page.url.rsplit("/", 1)[1]
    # a snapshot of a 4 s clip is done before the page's event stream has connected:
    # the page must still come to show FINISH
    page.locator("#task-live h2 .state.finish").wait_for(timeout=60_000)  # live, no reload
    browser.shot(page, "media-task-finished")
    rows = page.locator("#task-live tbody tr")
    assert rows.count() == 3 and "SUCCESS" in rows.nth(0).inner_text()

    # play the source: the <video> loads metadata through ranged requests
    page.locator("#source video").evaluate("v => v.load()")
    page.wait_for_function("document.querySelector('#source video').readyState >= 1")
    duration = page.locator("#source video").evaluate("v => v.duration")
    assert abs(duration - 4.0) < 0.1

    rows.nth(0).get_by_text("View / download").click()
    page.wait_for_function("document.querySelector('#task-live video') &&"
                           " document.querySelector('#task-live video').src")  # fmt: skip
    with page.expect_download() as info:
        rows.nth(0).get_by_role("link", name=re.compile(r"_transcode_100010\.mp4")).click()
    saved = tmp_path / "got.mp4"
    info.value.save_as(saved)
    task = stack.call("GET", f"/api/v1/media/tasks/{task_id}")[1]
    on_disk = Path(task["subtasks"][0]["outputs"][0]["path"]).read_bytes()
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(on_disk).digest()
    rows.nth(1).get_by_text("View / download").click()
    with page.expect_download() as info:
        rows.nth(1).get_by_role("link", name="Download all (zip)").click()
    assert info.value.suggested_filename == f"{task_id}-2.zip"
    assert clip.exists()


def test_restart_and_terminate_from_the_list(chromium: object, stack: Stack) -> None:
    inputs = stack.data / "media" / "input"
    make_clip(inputs / "console-long.mp4", seconds=16, size=(1280, 720), graph=MOVING)
    make_clip(inputs / "console-short.mp4")
    body = {"input": {"path": "console-short.mp4"}, "snapshots": [{"offsets": ["1s"]}]}
    done = stack.call("POST", "/api/v1/media/tasks", body)[1]
    assert wait_for(lambda: stack.call("GET", f"/api/v1/media/tasks/{done['task_id']}")[1]
                    ["status"] == "FINISH", timeout=30)  # fmt: skip
    busy = stack.call("POST", "/api/v1/media/tasks", {"input": {"path": "console-long.mp4"},
                      "transcodes": [{"template_id": 100040}]})[1]  # fmt: skip
    waiting = stack.call("POST", "/api/v1/media/tasks", body)[1]
    page = _page(chromium, stack)
    page.goto(stack.api + "/console/media")
    row = page.locator(f"#row-{waiting['task_id']}")
    page.on("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Terminate {waiting['task_id']}").click()
    page.locator(f"#row-{waiting['task_id']}").get_by_text("failed").wait_for()
    browser.shot(page, "media-list")
    terminated = stack.call("GET", f"/api/v1/media/tasks/{waiting['task_id']}")[1]
    assert terminated["status"] == "FINISH" and terminated["error_code"] == "TaskAborted"

    finished = page.locator(f"#row-{done['task_id']}")
    finished.get_by_role("button", name=f"Restart {done['task_id']}").click()
    assert wait_for(lambda: stack.call("GET", f"/api/v1/media/tasks/{done['task_id']}")[1]
                    ["run"] == 2, timeout=10)  # fmt: skip
    finished.get_by_role("button", name=f"Show subtasks of {done['task_id']}").click()
    page.locator(f"#sub-{done['task_id']} table").wait_for()
    # the running one shows neither operation
    running = page.locator(f"#row-{busy['task_id']}")
    assert running.get_by_role("button", name=re.compile("Restart|Terminate")).count() == 0
    page.set_viewport_size({"width": 390, "height": 844})
    browser.shot(page, "media-list-390")
    assert page.evaluate("document.documentElement.scrollWidth") <= 400


def test_guest_sees_no_changing_buttons_and_the_api_refuses(
    chromium: object, stack: Stack, origin: OriginProcess, tmp_path: Path
) -> None:
    status, _ = stack.call("POST", "/api/v1/users", {"name": "guest1", "password": "guest-pass-1",
                                                    "role": "guest"})  # fmt: skip
    assert status in (200, 201)
    _cached_everywhere(stack, origin, tmp_path, "console-guest.bin")
    page = _page(chromium, stack, user="guest1", password="guest-pass-1")
    page.locator("input[name=url]").first.fill(origin.url("/files/console-guest.bin"))
    page.get_by_role("button", name="Search").click()
    page.get_by_role("article", name="Scheduler cluster 1").wait_for()
    assert page.get_by_role("button", name="DELETE").count() == 0
    page.goto(stack.api + "/console/media")
    assert page.get_by_text("Create a task").count() == 0
    assert page.get_by_role("button", name=re.compile("^(Restart|Terminate) ")).count() == 0
    browser.shot(page, "guest-media")
    # and the server refuses the same actions if they are forced
    form = {"search_job": "1", "cluster": "1", "confirm": "DELETE"}
    refused = page.request.post(stack.api + "/console/tasks/delete", form=form)
    assert refused.status == 403
    tasks = stack.call("GET", "/api/v1/media/tasks")[1]["tasks"]
    refused = page.request.post(f"{stack.api}/console/media/tasks/{tasks[0]['task_id']}/restart")
    assert refused.status == 403


def test_every_page_is_labelled_and_fits_a_phone(chromium: object, stack: Stack) -> None:
    page = _page(chromium, stack, width=390)
    for path in ("/console/tasks", "/console/executions", "/console/preheat", "/console/media",
                 "/console/media/templates", "/console/media/workflows"):  # fmt: skip
        page.goto(stack.api + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button')].filter(el =>
            !(el.labels && el.labels.length) && !el.getAttribute('aria-label') &&
            !(el.textContent || '').trim()).map(el => el.outerHTML)""")
        assert unlabelled == [], (path, unlabelled)
        assert page.evaluate("document.documentElement.scrollWidth") <= 400, path
        browser.shot(page, "phone" + path.replace("/", "-"))
    # keyboard: the first tab stops reach the navigation and the search form
    page.goto(stack.api + "/console/tasks")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent ||"
                                     " document.activeElement.name"))  # fmt: skip
    assert "Executions" in reached and "url" in reached


def test_image_search_and_preheat_from_the_console(
    chromium: object, stack: Stack, origin: OriginProcess, tmp_path: Path
) -> None:
    from tests.support.registry import Registry, available, layer, push_image

    if not available():
        pytest.skip("needs docker-registry")
    registry = Registry("anonymous", tmp_path / "registry").start()
    try:
        image = push_image(registry, "team/app", "v1", [layer(1 << 20, 71), layer(1 << 20, 72)])
        edge_a = stack.peers[0][2]
        blob = registry.blob_url("team/app", image.layers[0])
        got = run_damselfly("get", blob, "-O", str(tmp_path / "layer"), "--no-progress",
                            "--data-dir", str(edge_a))  # fmt: skip
        assert got.returncode == 0, got.stderr
        page = _page(chromium, stack)
        page.get_by_role("radio", name="Image manifest URL").check()
        page.get_by_role("textbox", name="Image manifest URL").fill(
            registry.manifest_url("team/app", "v1")
        )
        page.get_by_role("textbox", name="Platform").fill("linux/amd64")
        _search(page)
        results = page.locator("#results")
        assert "3 blobs" in results.inner_text()
        row = results.locator("tbody tr", has_text="edge-a")
        assert "33.3% (1/3)" in row.inner_text()
        assert results.locator("tbody tr", has_text="vm").count() == 0  # seed peers left out
        browser.shot(page, "search-image")

        # preheat a file onto the seed peer, then follow its execution to SUCCESS
        write_random(origin.root / "console-preheat.bin", 2 << 20, seed=9)
        page.get_by_role("link", name="Preheat").click()
        page.get_by_role("textbox", name="URL (or image manifest URL)").fill(
            origin.url("/files/console-preheat.bin")
        )
        page.get_by_role("button", name="Preheat").click()
        page.wait_for_url(re.compile(r"/console/executions/\d+$"))
        page.locator("#execution .state.success").wait_for(timeout=30_000)
        browser.shot(page, "preheat-execution")
        page.get_by_role("link", name="Preheat").click()
        assert "console-preheat.bin" in page.locator("#preheats").inner_text()
    finally:
        registry.close()


def test_upload_from_the_browser_and_search_by_id(
    chromium: object, stack: Stack, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "from-my-laptop.mp4")
    page = _page(chromium, stack)
    page.goto(stack.api + "/console/media")
    page.locator("details.card").evaluate("d => d.open = true")
    page.get_by_role("radio", name="Upload").check()
    page.get_by_label("File", exact=True).set_input_files(str(clip))
    page.get_by_label("Transcoding template").select_option("")
    page.get_by_label("Snapshots at").fill("2s")
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/console/media/tasks/mt-"))
    task_id = page.url.rsplit("/", 1)[1]
    # a snapshot of a 4 s clip is done before the page's event stream has connected:
    # the page must still come to show FINISH
    page.locator("#task-live h2 .state.finish").wait_for(timeout=60_000)
    task = stack.call("GET", f"/api/v1/media/tasks/{task_id}")[1]
    assert task["input"]["kind"] == "upload" and task["input"]["name"] == "from-my-laptop.mp4"
    assert not task["failed"]

    page.goto(stack.api + "/console/media")
    page.get_by_label("Task ID").fill(task_id[-8:])
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"task_id="))
    rows = page.locator("#media-tasks tbody[id^=row-]")
    assert rows.count() == 1 and task_id in rows.first.inner_text()
