"""Media tasks through a real manager process: create, run, serve outputs, priorities,
terminate, restart, recovery after SIGKILL, errors, events and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import urllib3

from tests.support.cluster import spawn_service, wait_for, wait_ready
from tests.support.manager import ManagerProcess, start_manager
from tests.support.media import MOVING, make_clip, probe, stream
from tests.support.processes import OriginProcess, run_damselfly, stop


class MediaServer:
    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self.inputs = root / "in"
        self.outputs = root / "out"
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.manager = self.start()
        self.http = urllib3.PoolManager()

    def start(self) -> ManagerProcess:
        return start_manager(
            self.root / "manager", "--media-input-root", str(self.inputs),
            "--media-output-root", str(self.outputs), "--media-workers", str(self.workers),
        )  # fmt: skip

    @property
    def token(self) -> str:
        return self.manager.root_token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.manager.call(method, "/api/v1/media" + path, body, self.token)

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        status, task = self.call("POST", "/tasks", request)
        assert status == 200, task
        return task

    def task(self, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/tasks/{task_id}")[1]

    def wait(self, task_id: str, status: str = "FINISH", timeout: float = 60) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.task(task_id))
            return seen["status"] == status

        assert wait_for(reached, timeout=timeout, interval=0.1), seen
        return seen

    def raw(self, path: str, headers: dict[str, str] | None = None, token: bool = True):
        return self.http.request(
            "GET", self.manager.url + "/api/v1/media" + path,
            headers={**({"Authorization": f"Bearer {self.token}"} if token else {}),
                     **(headers or {})},
        )  # fmt: skip

    def stop(self) -> None:
        self.manager.stop()


def listen(
    server: MediaServer, path: str, events: list[dict], last: Callable[[dict], bool]
) -> threading.Thread:
    """Collect the SSE stream at `path` into `events` until `last(event)`; started,
    and connected when this returns."""
    connected = threading.Event()

    def run() -> None:
        resp = server.http.request(
            "GET", f"{server.manager.url}{path}",
            headers={"Authorization": f"Bearer {server.token}"}, preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=30),
        )  # fmt: skip
        connected.set()
        try:
            for line in resp.stream(None):
                for chunk in line.decode().split("\n"):
                    if chunk.startswith("data: "):
                        events.append(json.loads(chunk[6:]))
                if events and last(events[-1]):
                    break
        except urllib3.exceptions.HTTPError:
            pass  # the server stopped first
        finally:
            # an endless stream: the connection cannot go back to the pool
            resp.close()
            resp.release_conn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert connected.wait(10), f"no answer from {path}"
    time.sleep(0.2)  # subscribed once the first bytes came; the handler runs on
    return thread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MediaServer]:
    media = MediaServer(tmp_path)
    make_clip(media.inputs / "clip.mp4")
    try:
        yield media
    finally:
        media.stop()
    assert "Traceback" not in (media.manager.data_dir / "stderr.log").read_text()


EVERYTHING = {
    "transcodes": [{"template_id": 100010}, {"template_id": 100210}],
    "snapshots": [{"offsets": ["1.5s", "50%"]}],
    "sampled_snapshots": [{"interval": "25%"}],
    "image_sprites": [{"overrides": {"interval": 1}}],
    "animated_images": [{"start": "0.5s", "end": "2s"}],
    "content_understanding": True,
    "review": True,
}


def test_every_subtask_runs_and_its_outputs_are_served(server: MediaServer) -> None:
    task = server.create({"input": {"path": "clip.mp4"}, "output_dir": "/videos/", **EVERYTHING})
    assert task["status"] == "WAITING" and len(task["subtasks"]) == 8
    done = server.wait(task["task_id"])
    assert not done["failed"], done
    assert [s["status"] for s in done["subtasks"]] == ["SUCCESS"] * 8
    assert [s["type"] for s in done["subtasks"]] == [
        "transcode", "hls", "snapshot", "sampled_snapshot", "image_sprite", "animated_image",
        "content_understanding", "review",
    ]  # fmt: skip
    assert done["media_info"]["duration"] == pytest.approx(4.0, abs=0.05)
    assert done["media_info"]["width"] == 320 and done["begin_at"] <= done["finish_at"]
    out_dir = server.outputs / "videos" / task["task_id"]
    assert done["output_dir"] == str(out_dir)
    transcode, hls, snaps, sampled = done["subtasks"][:4]
    assert len(snaps["outputs"]) == 2 and len(sampled["outputs"]) == 4
    assert transcode["outputs"][0]["height"] == 360
    assert done["subtasks"][6]["result"]["scene_cuts"] == pytest.approx([1.0, 2.0], abs=0.05)
    assert done["subtasks"][6]["outputs"] == [] and done["subtasks"][7]["result"]["suggestion"]
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]

    # view and download: bytes as on disk
    mp4 = out_dir / transcode["outputs"][0]["name"]
    seq = transcode["seq"]
    view = server.raw(f"/tasks/{task['task_id']}/subtasks/{seq}/outputs/0")
    assert view.status == 200 and view.headers["Content-Type"] == "video/mp4"
    assert hashlib.sha256(view.data).digest() == hashlib.sha256(mp4.read_bytes()).digest()
    assert view.headers["Content-Disposition"].startswith("inline")
    got = server.raw(f"/tasks/{task['task_id']}/subtasks/{seq}/outputs/0?download=true")
    assert got.headers["Content-Disposition"].startswith("attachment")
    second = server.raw(f"/tasks/{task['task_id']}/subtasks/{snaps['seq']}/outputs/1")
    assert second.status == 200 and second.data[:2] == b"\xff\xd8"  # a JPEG
    zipped = server.raw(f"/tasks/{task['task_id']}/subtasks/{hls['seq']}/archive")
    names = zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()
    assert names[0].endswith(".m3u8") and len(names) == 3
    missing = server.raw(f"/tasks/{task['task_id']}/subtasks/{seq}/outputs/5")
    assert missing.status == 404

    # source playback seeks: Range answered with 206; the token may ride in the query
    part = server.raw(f"/tasks/{task['task_id']}/source?access_token={server.token}",
                      {"Range": "bytes=100-199"}, token=False)  # fmt: skip
    assert part.status == 206 and len(part.data) == 100
    assert part.data == (server.inputs / "clip.mp4").read_bytes()[100:200]
    assert server.raw(f"/tasks/{task['task_id']}/source", token=False).status == 401

    listed = server.call("GET", "/tasks?status=FINISH&failed=false")[1]
    assert [t["task_id"] for t in listed["tasks"]] == [task["task_id"]] and listed["total"] == 1


def test_upload_url_and_broken_inputs(server: MediaServer, origin: OriginProcess) -> None:
    clip = (server.inputs / "clip.mp4").read_bytes()
    resp = server.http.request(
        "PUT", f"{server.manager.url}/api/v1/media/uploads?name=mine.mp4", body=clip,
        headers={"Authorization": f"Bearer {server.token}"},
    )  # fmt: skip
    upload = json.loads(resp.data)
    assert resp.status == 200 and upload["size"] == len(clip)
    uploaded = server.create({"input": {"upload": upload["upload_id"]},
                              "snapshots": [{"offsets": ["1s"]}]})  # fmt: skip
    (origin.root / "media-clip.mp4").write_bytes(clip)
    fetched = server.create({"input": {"url": origin.url("/files/media-clip.mp4")},
                             "transcodes": [{"template_id": 100010}]})  # fmt: skip
    garbage = server.inputs / "garbage.mp4"
    garbage.write_bytes(b"\0not a video" * 5000)
    broken = server.create({"input": {"path": "garbage.mp4"}, "snapshots": [{"offsets": ["1s"]}]})
    gone = server.create({"input": {"url": origin.url("/status/404")},
                          "snapshots": [{"offsets": ["1s"]}]})  # fmt: skip
    make_clip(server.inputs / "tone.m4a", graph="sine=d=2,aformat=channel_layouts=stereo[out0]",
              video=False)  # fmt: skip
    silent = server.create({"input": {"path": "tone.m4a"}, "snapshots": [{"offsets": ["1s"]}]})

    assert not server.wait(uploaded["task_id"])["failed"]
    done = server.wait(fetched["task_id"])
    assert not done["failed"], done
    assert stream(probe(Path(done["subtasks"][0]["outputs"][0]["path"])), "video")["height"] == 360
    for task, code in [
        (broken, "SourceFileError.ContentMalformed"),
        (gone, "SourceFileError.DownloadNotAccessible"),
        (silent, "SourceFileError.NoVideoMedia"),
    ]:
        finished = server.wait(task["task_id"])
        assert finished["failed"] and finished["error_code"] == code, finished
        assert finished["subtasks"][0]["status"] == "FAIL"
        assert finished["subtasks"][0]["error_code"] == code
    failed = server.call("GET", "/tasks?failed=true")[1]
    assert failed["total"] == 3


def test_priorities_terminate_and_restart(server: MediaServer) -> None:
    make_clip(server.inputs / "long.mp4", seconds=16, size=(1280, 720), graph=MOVING)
    busy = server.create({"input": {"path": "long.mp4"}, "transcodes": [{"template_id": 100040}]})
    server.wait(busy["task_id"], "PROCESSING")
    queued = {
        p: server.create({"input": {"path": "clip.mp4"}, "snapshots": [{"offsets": ["1s"]}],
                          "priority": p})
        for p in (-5, 5, 0)
    }  # fmt: skip
    doomed = server.create({"input": {"path": "clip.mp4"}, "snapshots": [{"offsets": ["1s"]}]})
    status, aborted = server.call("POST", f"/tasks/{doomed['task_id']}/abort")
    assert status == 200 and aborted["status"] == "FINISH" and aborted["failed"]
    assert aborted["error_code"] == "TaskAborted"
    status, answer = server.call("POST", f"/tasks/{busy['task_id']}/abort")
    assert status == 409 and "only WAITING" in answer["message"]
    status, answer = server.call("POST", f"/tasks/{queued[0]['task_id']}/restart")
    assert status == 409 and "only FINISH" in answer["message"]

    finished = {p: server.wait(t["task_id"], timeout=120) for p, t in queued.items()}
    order = sorted(finished, key=lambda p: finished[p]["begin_at"])
    assert order == [5, 0, -5]
    time.sleep(0.5)
    assert server.task(doomed["task_id"])["begin_at"] is None  # it never ran

    first = finished[5]
    status, again = server.call("POST", f"/tasks/{first['task_id']}/restart")
    # queued again; a free worker may already have picked it up
    assert status == 200 and again["status"] in ("WAITING", "PROCESSING") and again["run"] == 2
    rerun = server.wait(first["task_id"], timeout=120)
    assert rerun["run"] == 2 and not rerun["failed"] and rerun["restarts"] == 1
    assert (
        rerun["history"][0]["run"] == 1
        and rerun["history"][0]["subtasks"][0]["status"] == "SUCCESS"
    )
    assert rerun["request"] == first["request"]  # the frozen request, not today's templates
    assert Path(rerun["subtasks"][0]["outputs"][0]["path"]).is_file()


def test_a_killed_worker_leaves_no_partial_output_and_the_task_resumes(
    server: MediaServer,
) -> None:
    make_clip(server.inputs / "long.mp4", seconds=16, size=(1280, 720), graph=MOVING)
    task = server.create({"input": {"path": "long.mp4"}, "transcodes": [{"template_id": 100040}]})
    out_dir = server.outputs / task["task_id"]
    assert wait_for(lambda: server.task(task["task_id"])["progress"] >= 10, timeout=60)
    server.manager.process.send_signal(signal.SIGKILL)
    server.manager.process.wait(10)
    visible = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
    assert visible == [], "a partial output must never be visible"
    server.manager = server.start()
    done = server.wait(task["task_id"], timeout=120)
    assert not done["failed"] and done["run"] == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["long_transcode_100040.mp4"]
    info = probe(out_dir / "long_transcode_100040.mp4")
    assert abs(info["duration"] - 16) < 0.1 and stream(info, "video")["height"] == 1080


@pytest.mark.parametrize(
    "request_body, status, code",
    [
        ({"input": {"path": "clip.mp4"}}, 422, "InvalidInput"),
        ({"input": {"path": "clip.mp4"}, "transcodes": [{"template_id": 999}]}, 404,
         "ResourceNotFound.TemplateNotExist"),
        ({"input": {"path": "../../etc/passwd"}, "snapshots": [{"offsets": ["1s"]}]}, 422,
         "InvalidInput"),
        ({"input": {"path": "/etc/passwd"}, "snapshots": [{"offsets": ["1s"]}]}, 422,
         "InvalidInput"),
        ({"input": {"path": "clip.mp4"}, "output_dir": "../..",
          "snapshots": [{"offsets": ["1s"]}]}, 422, "InvalidInput"),
        ({"input": {"path": "clip.mp4"}, "snapshots": [{"offsets": ["1 minute"]}]}, 422,
         "InvalidInput"),
        ({"input": {"url": "ftp://x/y"}, "snapshots": [{"offsets": ["1s"]}]}, 422,
         "InvalidInput"),
        ({"input": {"path": "clip.mp4"}, "snapshots": [{"offsets": ["1s"]}], "priority": 11},
         422, "InvalidInput"),
        ({"input": {"upload": "nope"}, "snapshots": [{"offsets": ["1s"]}]}, 422, "InvalidInput"),
    ],
)  # fmt: skip
def test_bad_requests_get_codes(
    server: MediaServer, request_body: dict, status: int, code: str
) -> None:
    got, answer = server.call("POST", "/tasks", request_body)
    assert (got, answer["code"]) == (status, code), answer
    assert answer["message"]


def test_ids_sessions_templates_and_events(server: MediaServer) -> None:
    assert server.call("GET", "/tasks/nope")[1]["code"] == "InvalidParameterValue.TaskId"
    assert server.call("GET", "/tasks/mt-20200101-0")[1]["code"] == "ResourceNotFound.TaskNotFound"
    presets = server.call("GET", "/templates?kind=transcode")[1]
    assert {100010, 100210, 100080, 100280} <= {t["id"] for t in presets}
    assert server.call("PUT", "/templates/100010", {"kind": "transcode", "name": "x"})[0] == 409
    status, custom = server.call(
        "POST",
        "/templates",
        {"kind": "transcode", "name": "tiny", "params": {"height": 120, "video_bitrate": 100}},
    )
    assert status == 200 and custom["id"] >= 1_000_001
    assert server.call("POST", "/templates", {"kind": "transcode", "name": "x",
                                              "params": {"height": 121}})[0] == 422  # fmt: skip

    events: list[dict] = []
    listener = listen(server, "/api/v1/media/events", events, lambda e: e["status"] == "FINISH")
    body = {"input": {"path": "clip.mp4"}, "session_id": "batch-1",
            "transcodes": [{"template_id": custom["id"]}]}  # fmt: skip
    task = server.create(body)
    listener.join(60)
    statuses = [e["status"] for e in events if e["task_id"] == task["task_id"]]
    assert statuses[0] == "WAITING" and "PROCESSING" in statuses and statuses[-1] == "FINISH"
    progress = [e["progress"] for e in events if e["status"] == "PROCESSING"]
    assert progress == sorted(progress)
    status, answer = server.call("POST", "/tasks", body)
    assert status == 409 and answer["code"] == "InvalidParameterValue.SessionIdDuplicated"
    done = server.task(task["task_id"])
    assert done["subtasks"][0]["outputs"][0]["height"] == 120
    # a template changed later does not change the task's frozen request
    server.call("PUT", f"/templates/{custom['id']}", {"kind": "transcode", "name": "tiny",
                                                      "params": {"height": 240}})  # fmt: skip
    server.call("POST", f"/tasks/{task['task_id']}/restart")
    assert server.wait(task["task_id"])["subtasks"][0]["outputs"][0]["height"] == 120


def test_cli_submit_show_download(server: MediaServer, tmp_path: Path) -> None:
    common = ("--manager", server.manager.url, "--token", server.token)
    local = tmp_path / "local clip.mp4"
    local.write_bytes((server.inputs / "clip.mp4").read_bytes())
    done = run_damselfly("media", "submit", str(local), "--template", "100010", "--snapshot",
                         "1s", "--understanding", *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.split()[0]
    assert "transcode" in done.stdout and "SUCCESS" in done.stdout
    target = tmp_path / "got.mp4"
    got = run_damselfly("media", "download", task_id, "1", "-O", str(target), *common)
    assert got.returncode == 0, got.stderr
    output = Path(server.task(task_id)["subtasks"][0]["outputs"][0]["path"])
    assert target.read_bytes() == output.read_bytes()
    listed = run_damselfly("media", "list", "--status", "finish", *common)
    assert task_id in listed.stdout
    refused = run_damselfly("media", "abort", task_id, *common)
    assert refused.returncode == 1 and "only WAITING" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = run_damselfly("media", "submit", str(tmp_path / "missing.mp4"), *common)
    assert bad.returncode == 1 and "not a URL, a local file" in bad.stderr


class _Receiver(BaseHTTPRequestHandler):
    """Records webhook calls; answers 500 to the first when `refuse_first` is set."""

    calls: ClassVar[list[dict[str, Any]]] = []
    refuse_first: ClassVar[bool] = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.calls.append({"headers": dict(self.headers), "body": json.loads(body)})
        refuse = cls.refuse_first and len(cls.calls) == 1
        self.send_response(500 if refuse else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_are_signed_retried_and_sent_on_finish_or_change(server: MediaServer) -> None:
    _Receiver.calls, _Receiver.refuse_first = [], True
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    try:
        body = {"input": {"path": "clip.mp4"}, "snapshots": [{"offsets": ["1s"]}],
                "sampled_snapshots": [{"interval": "50%"}]}  # fmt: skip
        on_finish = server.create({**body, "notify": {"url": url, "key": "k1"}})
        server.wait(on_finish["task_id"])
        assert wait_for(lambda: len(_Receiver.calls) >= 2, timeout=10)  # refused once, retried
        first, retried = _Receiver.calls[:2]
        assert first["body"] == retried["body"]
        stamp = retried["headers"]["X-Damselfly-Timestamp"]
        expected = hashlib.md5((stamp + "k1").encode()).hexdigest()
        assert retried["headers"]["X-Damselfly-Signature"] == expected
        assert retried["body"]["event"] == "task_finished"
        assert retried["body"]["task"]["request"]["notify"]["key"] == "******"
        assert server.task(on_finish["task_id"])["request"]["notify"]["key"] == "******"

        _Receiver.calls, _Receiver.refuse_first = [], False
        on_change = server.create({**body, "notify": {"url": url, "mode": "change", "key": "k2"}})
        server.wait(on_change["task_id"])
        assert wait_for(
            lambda: (
                bool(_Receiver.calls) and _Receiver.calls[-1]["body"]["event"] == "task_finished"
            ),
            10,
        )
        events = [c["body"] for c in _Receiver.calls]
        states = [(e["task"]["status"], [s["status"] for s in e["task"]["subtasks"]])
                  for e in events]  # fmt: skip
        assert states[0] == ("WAITING", ["WAITING", "WAITING"])
        assert ("PROCESSING", ["SUCCESS", "PROCESSING"]) in states
        assert states[-1] == ("FINISH", ["SUCCESS", "SUCCESS"])
        assert len(states) == len(set(map(str, states))), "progress ticks are not changes"
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_file_arriving_in_a_workflow_directory_becomes_one_task(server: MediaServer) -> None:
    status, flow = server.call(
        "POST",
        "/workflows",
        {
            "name": "drop",
            "watch_dir": "drop",
            "request": {"output_dir": "/from-drop/", "transcodes": [{"template_id": 100010}]},
        },
    )
    assert status == 200, flow
    assert server.call("POST", "/workflows", {"name": "bad", "watch_dir": "/etc",
                                              "request": {}})[0] == 422  # fmt: skip
    drop = Path(flow["watch_dir"])
    clip = (server.inputs / "clip.mp4").read_bytes()
    (drop / ".incoming.part").write_bytes(clip)  # written under a hidden name ...
    (drop / ".incoming.part").rename(drop / "one.mp4")  # ... and renamed: now it arrived
    resp = server.http.request(
        "PUT", f"{server.manager.url}/api/v1/media/workflows/{flow['id']}/uploads?name=two.mp4",
        body=clip, headers={"Authorization": f"Bearer {server.token}"},
    )  # fmt: skip
    assert resp.status == 200

    def two_tasks() -> bool:
        return server.call("GET", "/tasks")[1]["total"] == 2

    assert wait_for(two_tasks, timeout=20)
    tasks = server.call("GET", "/tasks")[1]["tasks"]
    assert {t["input"]["name"] for t in tasks} == {"one.mp4", "two.mp4"}
    assert {t["workflow_id"] for t in tasks} == {flow["id"]}
    for t in tasks:
        done = server.wait(t["task_id"])
        assert not done["failed"] and "/from-drop/" in done["output_dir"]
    server.manager.stop()
    server.manager = server.start()
    time.sleep(2.5)  # two looks of the watcher: nothing new may appear
    assert server.call("GET", "/tasks")[1]["total"] == 2


def test_a_separate_worker_process_runs_what_the_manager_queues(tmp_path: Path) -> None:
    media = MediaServer(tmp_path, workers=0)
    make_clip(media.inputs / "clip.mp4")
    worker = spawn_service(
        ["worker", "--data-dir", str(media.manager.data_dir), "--workers", "1",
         "--media-input-root", str(media.inputs), "--media-output-root", str(media.outputs)],
        tmp_path / "worker",
    )  # fmt: skip
    try:
        wait_ready(worker, r"worker ready: 1 media worker", tmp_path / "worker" / "stderr.log")
        # the manager's event streams show what the worker did (its change feed)
        tasks: list[dict] = []
        jobs: list[dict] = []
        finished = listen(media, "/api/v1/media/events", tasks, lambda e: e["status"] == "FINISH")
        succeeded = listen(media, "/api/v1/jobs/events", jobs, lambda e: e["state"] == "SUCCESS")
        task = media.create({"input": {"path": "clip.mp4"}, "snapshots": [{"offsets": ["1s"]}]})
        done = media.wait(task["task_id"])
        assert not done["failed"] and len(done["subtasks"][0]["outputs"]) == 1
        finished.join(15)
        succeeded.join(15)
        statuses = [e["status"] for e in tasks if e["task_id"] == task["task_id"]]
        assert statuses[0] == "WAITING" and statuses[-1] == "FINISH", statuses
        assert jobs[-1]["state"] == "SUCCESS", jobs
        # a version is told once: a stream opened now hears nothing of what is done
        later: list[dict] = []
        listen(media, "/api/v1/media/events", later, lambda e: False)
        time.sleep(2.5)  # two more looks of the feed, both inside its look-back window
        assert later == []
    finally:
        stop(worker)
        media.stop()
    assert worker.returncode == 0
    assert "Traceback" not in (tmp_path / "worker" / "stderr.log").read_text()
