"""Whole-file digests for `--digest algo:hex` (verification only; never part of an ID)."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from damselfly.errors import DigestMismatch, InvalidInput

_HEX_LENGTHS = {"sha256": 64, "sha512": 128, "crc32": 8}
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse(text: str) -> Digest:
    algorithm, sep, value = text.partition(":")
    algorithm, value = algorithm.strip().lower(), value.strip().lower()
    if not sep or algorithm not in _HEX_LENGTHS:
        raise InvalidInput(
            f"invalid digest {text!r}: use algo:hex with algo one of sha256, sha512, crc32"
        )
    expected_len = _HEX_LENGTHS[algorithm]
    if len(value) != expected_len or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(
            f"invalid digest {text!r}: {algorithm} takes {expected_len} hex characters"
        )
    return Digest(algorithm, value)


def compute(path: Path, algorithm: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        if algorithm == "crc32":
            value = 0
            while chunk := os.read(fd, _CHUNK):
                value = zlib.crc32(chunk, value)
            return f"{value:08x}"
        hasher = hashlib.new(algorithm)
        while chunk := os.read(fd, _CHUNK):
            hasher.update(chunk)
        return hasher.hexdigest()
    finally:
        os.close(fd)


def verify(path: Path, expected: Digest, *, what: str) -> None:
    actual = compute(path, expected.algorithm)
    if actual != expected.hex:
        raise DigestMismatch(
            f"digest mismatch for {what}: expected {expected}, got {expected.algorithm}:{actual}; "
            "check the --digest value or the origin's content"
        )
