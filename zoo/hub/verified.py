"""Remember which local files were hashed and matched, so a warm load reads a file once, not twice.

A record (one small JSON file per local file, under `{HF_HUB_CACHE}/.zoo-verified/`) holds
the file's resolved path, its stat (size, inode, device, mtime_ns, ctime_ns) and its
sha256, written atomically only after a full hash. It is trusted only while the file's stat
is exactly the same: any write, truncation, replacement or `touch` changes ctime (which
no user call can set back), so the file is hashed again. What it does not catch is a change
that bypasses the filesystem (bit rot on the disk): the hash is checked once per cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from huggingface_hub import constants

from checkpoints_manifest import atomic_write_bytes, sha256_file


def sha256_of(path: Path) -> str:
    """The sha256 of `path`: from its record if its stat is unchanged since it was hashed, else hashed now."""
    real = path.resolve()
    before = _stamp(real)
    record = _record_path(real)
    try:
        known = json.loads(record.read_text())
        if known["path"] == str(real) and known["stat"] == before:
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record, or an unreadable one: hash
    digest = sha256_file(real)
    if _stamp(real) == before:  # the file did not change while it was hashed
        _write(real, before, digest)
    return digest


def remember(path: Path, sha256: str) -> None:
    """Record `sha256` for `path`, hashed by the caller as it wrote the file (a download)."""
    real = path.resolve()
    _write(real, _stamp(real), sha256)


def _write(real: Path, stamp: list[int], sha256: str) -> None:
    record = _record_path(real)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(record, json.dumps({"path": str(real), "stat": stamp, "sha256": sha256}).encode())
    except OSError:
        pass  # a read-only cache: correct, only slower


def forget(path: Path) -> None:
    """Drop the record of `path` (its copy failed verification or was evicted)."""
    _record_path(path.resolve()).unlink(missing_ok=True)


def _stamp(real: Path) -> list[int]:
    st = real.stat()
    return [st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]


def _record_path(real: Path) -> Path:
    key = hashlib.sha256(os.fsencode(real)).hexdigest()
    return Path(constants.HF_HUB_CACHE) / ".zoo-verified" / f"{key}.json"
