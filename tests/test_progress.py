from __future__ import annotations

import re

from damselfly.cli.progress import BAR_WIDTH, render

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] \[([=>-]{60})\] (\d+)% \(([\d.]+ \w+)/s, ([\d.]+)s\)$")


def test_finished_bar_matches_dfget() -> None:
    line = render(100, 100, 0.2, 209.63 * 1024)
    assert line == "[00:00:00] [" + "=" * BAR_WIDTH + "] 100% (209.63 KiB/s, 0.0s)"


def test_partial_bar_shape_and_eta() -> None:
    line = render(42, 100, 3.0, 14.0)
    m = LINE.match(line)
    assert m, line
    bar = m.group(1)
    assert bar.index(">") == 25 and bar.count("=") == 25 and bar.endswith("-")
    assert m.group(2) == "42"
    assert float(m.group(4)) == round(58 / 14.0, 1)


def test_unknown_total_shows_bytes() -> None:
    assert "MiB" in render(5 * 1024 * 1024, None, 1.0, 1024.0)
