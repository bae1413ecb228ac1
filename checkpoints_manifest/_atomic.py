"""Atomic and durable writes: the one mechanism every file in a run is written by.

A reader (or a crash) sees either the old file or the complete new one, never a
torn write. Temp files are named `.<name>.<random>.tmp` in the target's own
directory, so the final rename never crosses a filesystem.
"""

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._canonical import canonical_json

_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Replace `path` by what `write(tmp_path)` writes, atomically and durably.

    `write` creates the file at the temp path it is given (e.g.
    `lambda tmp: safetensors.torch.save_file(tensors, tmp)`). Then the file is
    fsynced, given the mode the umask allows (0666 & ~umask, as `open` would: some
    writers, safetensors among them, create 0600 files), renamed onto `path` and the
    directory fsynced. If anything raises, the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: directory {parent} does not exist; create it first"
        )
    tmp = parent / f".{path.name}.{secrets.token_hex(8)}.tmp"  # matches _TEMP_NAME
    try:
        write(tmp)
        if not tmp.is_file():
            raise FileNotFoundError(
                f"cannot write {path}: the writer did not create a file at the "
                f"temp path {tmp} it was given"
            )
        os.chmod(tmp, 0o666 & ~current_umask())
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Replace `path` by `obj` as canonical JSON (indent 2, sorted keys, newline), utf-8."""
    atomic_write_bytes(path, canonical_json(obj).encode("utf-8"))


def discard_temp_files(directory: str | os.PathLike) -> None:
    """Remove the temp files that atomic writes killed mid-way left in `directory`.

    Only for a directory no other process is writing (e.g. a locked run dir): a
    live writer's temp file looks the same as a dead one's.
    """
    for child in Path(directory).iterdir():
        if _TEMP_NAME.fullmatch(child.name) and child.is_file():
            child.unlink()


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a directory (after a rename into it, so the rename is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it, which would race
    with other threads creating files): from /proc/self/status on Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it back at once
    os.umask(mask)
    return mask
