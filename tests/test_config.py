"""Configuration files, the generated reference, and the example deployment files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly import config
from tests.support.cluster import http_json, spawn_service, wait_for, wait_ready
from tests.support.processes import run_damselfly, stop

ROOT = Path(__file__).parent.parent


def test_the_committed_reference_is_what_the_settings_say() -> None:
    generated = run_damselfly("config", "reference").stdout
    assert (ROOT / "docs" / "configuration.md").read_text() == generated, (
        "docs/configuration.md is stale: run `damselfly config reference > docs/configuration.md`"
    )
    for section, settings_type in config.SECTIONS.items():
        for name in settings_type.__dataclass_fields__:
            assert f"| `{name}` |" in generated.split(f"## [{section}]")[1].split("## [")[0]


def test_a_service_reads_its_table_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "damselfly.toml"
    path.write_text(
        '[scheduler]\ndata_dir = "sched"\nlisten = "127.0.0.1"\nport = 0\nhost_ttl = "2m"\n'
        '[peer]\ndata_dir = "peer"\nhostname = "from-file"\nip = "127.0.0.1"\n'
        'listen = "127.0.0.1"\nupload_rate = "10MiB"\n'
    )
    scheduler = spawn_service(["scheduler", "--config", str(path)], tmp_path / "s")
    peers = []
    try:
        port = int(
            wait_ready(
                scheduler, r"ready: http://127\.0\.0\.1:(\d+)", tmp_path / "s" / "stderr.log"
            ).group(1)
        )
        assert (tmp_path / "sched" / "logs").is_dir()  # relative to the file, not the cwd
        url = f"http://127.0.0.1:{port}"
        for extra in ([], ["--hostname", "from-flag", "--data-dir", str(tmp_path / "p2")]):
            peer = spawn_service(
                ["peer", "--config", str(path), "--scheduler", url, *extra], tmp_path / "p"
            )
            peers.append(peer)
            wait_ready(peer, r"peer \S+ ready", tmp_path / "p" / "stderr.log")

        def hosts() -> set[str]:
            return {h["hostname"] for h in http_json("GET", f"{url}/api/v1/hosts")[1]}

        assert wait_for(lambda: hosts() == {"from-file", "from-flag"}), hosts()
    finally:
        for process in [*peers, scheduler]:
            stop(process)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[peer]\nfoo = 1\n", "[peer] has no setting 'foo'"),
        ("[peers]\n", "unknown table [peers]"),
        ("[peer]\nupload_slots = 'many'\n", "[peer] upload_slots must be a whole number"),
        ("[peer]\ngc_ttl = 'soon'\n", "[peer] gc_ttl: invalid duration 'soon'"),
        ("[peer]\nconcurrency = 0\n", "concurrency 0 is not within 1-64"),
        ("[peer\n", "is not valid TOML"),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for argv in (["config", "check", str(path)], ["peer", "--config", str(path)]):
        result = run_damselfly(*argv, data_dir=tmp_path)
        assert result.returncode != 0
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "KiB", "MiB"]))
def test_sizes_and_durations_read_as_written(number: int, unit: str) -> None:
    file = config.ConfigFile(Path("/etc/damselfly.toml"), {
        "peer": {"upload_rate": f"{number}{unit}", "gc_ttl": f"{number}m", "read_timeout": number}
    })  # fmt: skip
    values = file.values("peer")
    assert values["upload_rate"] == number * {"": 1, "KiB": 1024, "MiB": 1 << 20}[unit]
    assert values["gc_ttl"] == number * 60
    assert values["read_timeout"] == float(number)


def test_the_example_config_is_valid() -> None:
    lines = run_damselfly("config", "check", str(ROOT / "deploy" / "damselfly.toml")).stdout
    assert lines.split().count("ok") == 4


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_systemd_units_verify(tmp_path: Path) -> None:
    executable = str(Path(sys.executable).parent / "damselfly")
    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert {u.stem for u in units} == {f"damselfly-{s}" for s in
                                       ("manager", "scheduler", "peer", "worker")}  # fmt: skip
    for unit in units:
        text = unit.read_text()
        assert "--config /etc/damselfly/damselfly.toml" in text
        # verify checks that ExecStart exists: point it at this checkout's CLI
        (tmp_path / unit.name).write_text(text.replace("/opt/damselfly/bin/damselfly", executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
