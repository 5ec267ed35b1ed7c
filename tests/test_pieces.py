from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly import digest, pieces
from damselfly.errors import InvalidInput
from damselfly.units import format_size, parse_duration, parse_size

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, 4 * MiB),
        (1, 4 * MiB),
        (2000 * MiB, 4 * MiB),  # 4 MiB exactly
        (2000 * MiB + 1, 8 * MiB),
        (1024 * MiB, 4 * MiB),
        (8000 * MiB, 16 * MiB),
        (100 * 1024 * MiB, 64 * MiB),
        (10 * 1024 * 1024 * MiB, 64 * MiB),
    ],
)
def test_default_piece_length(length: int, expected: int) -> None:
    assert pieces.default_piece_length(length) == expected


@given(st.integers(min_value=1, max_value=1 << 45))
def test_default_piece_length_rule(length: int) -> None:
    p = pieces.default_piece_length(length)
    assert pieces.MIN_PIECE_LENGTH <= p <= pieces.MAX_PIECE_LENGTH
    assert p & (p - 1) == 0
    if pieces.MIN_PIECE_LENGTH < p < pieces.MAX_PIECE_LENGTH:
        assert p >= length / 500 > p / 2


@given(st.integers(min_value=0, max_value=1 << 40), st.integers(min_value=1, max_value=1 << 27))
def test_layout_covers_content_exactly(size: int, piece_length: int) -> None:
    layout = pieces.PieceLayout(size, piece_length)
    if layout.count > 2000:
        return  # the property is the same; keep the example cheap
    ps = layout.pieces()
    assert sum(p.length for p in ps) == size
    offset = 0
    for n, p in enumerate(ps):
        assert p.number == n and p.offset == offset and 0 < p.length <= piece_length
        offset = p.end
    with pytest.raises(IndexError):
        layout.piece(layout.count)


def test_piece_id_and_digest_format() -> None:
    assert pieces.piece_id("abc", 3) == "abc-3"
    crc = zlib.crc32(b"hello")
    assert pieces.format_digest(crc) == f"crc32:{crc:08x}"
    assert pieces.parse_digest(pieces.format_digest(crc)) == crc


def test_check_piece_length() -> None:
    assert pieces.check_piece_length(4 * MiB) == 4 * MiB
    with pytest.raises(InvalidInput, match="minimum of 4 MiB"):
        pieces.check_piece_length(4 * MiB - 1)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4194304", 4 * MiB),
        ("4MiB", 4 * MiB),
        ("8mib", 8 * MiB),
        ("4 MiB", 4 * MiB),
        ("1KB", 1000),
        ("1k", 1024),
        ("1.5KiB", 1536),
        ("2g", 2 * 1024 * MiB),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MiB", "4XB", "-4MiB", "1.3B"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(text)


def test_durations_and_sizes_print() -> None:
    assert parse_duration("30") == 30 and parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120 and parse_duration("1h") == 3600
    for bad in ["", "0", "5x", "-1"]:
        with pytest.raises(InvalidInput):
            parse_duration(bad)
    assert format_size(209.63 * 1024) == "209.63 KiB"
    assert format_size(12) == "12 B"


def test_digest_parse_and_verify(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    good = digest.parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    digest.verify(path, good, what="f")
    digest.verify(path, digest.parse(f"crc32:{zlib.crc32(b'abc'):08x}"), what="f")
    with pytest.raises(Exception, match="digest mismatch"):
        digest.verify(path, digest.parse("crc32:00000000"), what="f")
    for bad in ["sha256", "md5:abc", "sha256:xyz", "sha256:" + "a" * 63, "crc32:zzzzzzzz"]:
        with pytest.raises(InvalidInput):
            digest.parse(bad)
