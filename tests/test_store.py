from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest

from damselfly.storage import PieceRecord, Store, TaskRecord, TaskState
from damselfly.storage.filesystems import PREALLOCATING, fs_type
from damselfly.storage.gc import GCPolicy, collect
from damselfly.storage.store import DiskUsage

TASK_A = "a" * 64
TASK_B = "b" * 64
TASK_C = "c" * 64


def record(
    task_id: str,
    *,
    length: int,
    state: TaskState = TaskState.SUCCEEDED,
    accessed: float | None = None,
    boot_id: str = "",
) -> TaskRecord:
    now = time.time()
    return TaskRecord(
        task_id,
        f"http://o/{task_id[:4]}",
        "",
        "",
        4 << 20,
        length,
        state,
        "",
        "",
        boot_id,
        "",
        now,
        now,
        accessed if accessed is not None else now,
    )


def put_content(
    store: Store,
    task_id: str,
    data: bytes,
    *,
    accessed: float | None = None,
    boot_id: str | None = None,
) -> None:
    fd = store.open_content(task_id, len(data))
    os.pwrite(fd, data, 0)
    os.close(fd)
    store.metadata.put_task(
        record(
            task_id,
            length=len(data),
            accessed=accessed,
            boot_id=store.boot_id if boot_id is None else boot_id,
        )
    )
    half = len(data) // 2
    store.metadata.add_pieces(
        [
            PieceRecord(task_id, 0, 0, half, zlib.crc32(data[:half])),
            PieceRecord(task_id, 1, half, len(data) - half, zlib.crc32(data[half:])),
        ]
    )


def test_layout_and_metadata_survive_reopen(data_dir: Path) -> None:
    store = Store(data_dir)
    put_content(store, TASK_A, b"x" * 1000)
    assert store.content_path(TASK_A) == data_dir / "content" / "tasks" / "aaa" / TASK_A
    store.close()
    again = Store(data_dir)
    rec = again.metadata.get_task(TASK_A)
    assert rec is not None and rec.state is TaskState.SUCCEEDED and rec.content_length == 1000
    assert sorted(again.metadata.pieces(TASK_A)) == [0, 1]
    assert again.completed_task(TASK_A) is not None


def test_open_content_sizes_the_file_and_allocates_it_where_cheap(data_dir: Path) -> None:
    store = Store(data_dir)
    fd = store.open_content(TASK_A, 10 << 20)
    os.close(fd)
    stat = store.content_path(TASK_A).stat()
    assert stat.st_size == 10 << 20
    kind = fs_type(data_dir)
    if kind in PREALLOCATING:
        assert stat.st_blocks * 512 >= 10 << 20, f"{kind}: not pre-allocated"
    elif kind == "tmpfs":
        assert stat.st_blocks == 0, "tmpfs: pre-allocating costs 0.24 s per GiB"


def test_tmpfs_content_stays_sparse(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if fs_type(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    data = Path(tempfile.mkdtemp(prefix="damselfly-test-", dir=shm))
    try:
        store = Store(data)
        assert not store.preallocate
        os.close(store.open_content(TASK_A, 64 << 20))
        assert store.content_path(TASK_A).stat().st_blocks == 0
        store.close()
    finally:
        shutil.rmtree(data)


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:21 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
31 22 0:30 / /srv/my\\040cache rw,relatime shared:9 - xfs /dev/vdb rw
40 22 0:40 / /mnt/over rw - ext4 /dev/vdc rw
41 40 0:41 / /mnt/over rw - tmpfs tmpfs rw
50 22 0:50 / /opt/optional rw shared:12 master:3 - btrfs /dev/vdd rw
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/var/lib/damselfly", "ext4"),
        ("/dev/shm/d", "tmpfs"),
        ("/dev/shmem", "ext4"),  # a sibling named alike is not inside the mount
        ("/srv/my cache/data", "xfs"),  # mountinfo escapes the space as \040
        ("/mnt/over/data", "tmpfs"),  # a later mount on the same point hides the first
        ("/opt/optional/x", "btrfs"),  # optional fields before the separator
    ],
)
def test_fs_type_reads_mountinfo(tmp_path: Path, path: str, kind: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    assert fs_type(Path(path), mountinfo) == kind


def test_fs_type_unknown_without_mountinfo(tmp_path: Path) -> None:
    assert fs_type(Path("/"), tmp_path / "missing") is None


def test_verify_pieces_finds_corruption(data_dir: Path) -> None:
    store = Store(data_dir)
    put_content(store, TASK_A, b"0123456789" * 100)
    assert store.verify_pieces(TASK_A, store.metadata.pieces(TASK_A).values()) == []
    with store.content_path(TASK_A).open("r+b") as f:
        f.seek(700)
        f.write(b"X")
    assert store.verify_pieces(TASK_A, store.metadata.pieces(TASK_A).values()) == [1]


def test_after_a_reboot_content_is_reverified_once(data_dir: Path) -> None:
    store = Store(data_dir)
    put_content(store, TASK_A, b"q" * 4096, boot_id="an-earlier-boot")
    put_content(store, TASK_B, b"r" * 4096, boot_id="an-earlier-boot")
    with store.content_path(TASK_B).open("r+b") as f:
        f.write(b"\0\0\0")  # as if pages never reached the disk
    assert store.completed_task(TASK_A) is not None
    assert store.metadata.get_task(TASK_A).boot_id == store.boot_id
    assert store.completed_task(TASK_B) is None
    b = store.metadata.get_task(TASK_B)
    assert b.state is TaskState.RUNNING and sorted(store.metadata.pieces(TASK_B)) == [1]


def test_missing_content_file_drops_the_record(data_dir: Path) -> None:
    store = Store(data_dir)
    put_content(store, TASK_A, b"z" * 100)
    store.content_path(TASK_A).unlink()
    assert store.completed_task(TASK_A) is None
    assert store.metadata.get_task(TASK_A) is None


def test_task_lock_excludes_other_processes(data_dir: Path) -> None:
    store = Store(data_dir)
    lock = store.lock(TASK_A)
    assert lock.acquire(blocking=False)
    code = (
        "import sys; from pathlib import Path; from damselfly.storage import Store;"
        f"l = Store(Path({str(data_dir)!r})).lock({TASK_A!r});"
        "sys.exit(0 if l.acquire(blocking=False) else 3)"
    )
    held = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert held.returncode == 3
    lock.release()
    free = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert free.returncode == 0


def test_gc_ttl_evicts_expired_only(data_dir: Path) -> None:
    store = Store(data_dir)
    now = time.time()
    put_content(store, TASK_A, b"a" * 100, accessed=now - 31 * 86400)
    put_content(store, TASK_B, b"b" * 100, accessed=now - 1 * 86400)
    report = collect(store, GCPolicy(), now=now)
    assert report.evicted == [TASK_A]
    assert not store.content_path(TASK_A).exists()
    assert store.metadata.get_task(TASK_A) is None
    assert store.content_path(TASK_B).exists()


def fake_disk(store: Store, total: int):
    def usage() -> DiskUsage:
        used = sum(
            p.stat().st_blocks * 512
            for p in store.tasks_dir.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")
        )
        return DiskUsage(total, used, total - used)

    return usage


def test_gc_watermark_evicts_lru_down_to_low_and_skips_busy(data_dir: Path) -> None:
    store = Store(data_dir)
    now = time.time()
    blob = os.urandom(1 << 20)
    for age, task in ((300, TASK_A), (200, TASK_B), (100, TASK_C)):
        put_content(store, task, blob, accessed=now - age)
    usage = fake_disk(store, total=int(3.5 * (1 << 20)))  # ~86% used
    busy = store.lock(TASK_A)
    assert busy.acquire(blocking=False)  # the oldest is being served: never touched
    report = collect(
        store, GCPolicy(high_watermark=0.8, low_watermark=0.6), now=now, disk_usage=usage
    )
    busy.release()
    assert report.skipped_busy == [TASK_A]
    assert report.evicted == [TASK_B]
    assert usage().used_fraction <= 0.6
    assert store.content_path(TASK_A).exists() and store.content_path(TASK_C).exists()


def test_gc_below_high_watermark_does_nothing(data_dir: Path) -> None:
    store = Store(data_dir)
    put_content(store, TASK_A, os.urandom(1 << 20))
    report = collect(store, GCPolicy(), disk_usage=fake_disk(store, total=100 << 20))
    assert report.evicted == []


def test_gc_frees_room_for_a_download(data_dir: Path) -> None:
    store = Store(data_dir)
    put_content(store, TASK_A, os.urandom(1 << 20), accessed=time.time() - 10)
    put_content(store, TASK_B, os.urandom(1 << 20))
    usage = fake_disk(store, total=3 << 20)  # 66% used: under the watermark
    report = collect(store, GCPolicy(), disk_usage=usage, free_at_least=int(1.5 * (1 << 20)))
    assert report.evicted == [TASK_A]


def test_newer_schema_is_refused(data_dir: Path) -> None:
    import sqlite3

    Store(data_dir).close()
    conn = sqlite3.connect(data_dir / "metadata.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this damselfly"):
        Store(data_dir)
