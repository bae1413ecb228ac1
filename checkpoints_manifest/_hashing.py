"""sha256 of files and bytes: the identity of every published file."""

import hashlib
import os

_CHUNK = 1 << 20  # 1 MiB: constant memory for multi-GB checkpoint files


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so any size fits in memory."""
    return _size_and_sha256(path)[1]


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of in-memory bytes (same digest as `sha256_file` of a file holding them)."""
    return hashlib.sha256(data).hexdigest()


def _size_and_sha256(path: str | os.PathLike) -> tuple[int, str]:
    """Size and hex sha256 from one read, so both describe the same bytes."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
