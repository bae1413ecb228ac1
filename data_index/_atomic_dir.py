"""Complete-or-nothing directories: build in a sibling temp dir, fsync it all, rename into place.

A reader (or a crash) sees no directory or a complete one, never a half-built
store. An interrupted build leaves only a `.NAME.partial-HOST-PID-*` sibling,
which the next build on that host removes once its process is gone.
"""

import errno
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checkpoints_manifest import ManifestError, read_json

from ._errors import DamagedStoreError, IncompleteStoreError, StoreNotFoundError


class TargetExistsError(Exception):
    """The target appeared while we built (a concurrent build won the race); ours was discarded."""


def build_dir(out_dir: Path, build: Callable[[Path], None]) -> None:
    """Run `build(tmp)` on a fresh temp dir beside `out_dir`, then atomically rename it to `out_dir`.

    `out_dir` must not exist (an empty directory is fine). Raises TargetExistsError
    if it was filled meanwhile; on any error the temp dir is removed.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out_dir)
    tmp = out_dir.parent / f"{_partial_prefix(out_dir)}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        build(tmp)
        _fsync_tree(tmp)
        try:
            os.rename(tmp, out_dir)  # atomic; replaces an empty dir, refuses a non-empty one
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise TargetExistsError(str(out_dir)) from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(out_dir.parent)


def _partial_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.partial-"


def _remove_stale_partials(out_dir: Path) -> None:
    """Remove temp dirs of builds on this host whose process has died (an interrupted build)."""
    host = socket.gethostname()
    for p in out_dir.parent.glob(_partial_prefix(out_dir) + "*"):
        parts = p.name[len(_partial_prefix(out_dir)) :].rsplit("-", 2)  # host-pid-random; a host may hold '-'
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under root, so the rename publishes durable bytes."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(path: Path, meta_name: str, *, fmt: str, versions: tuple[int, ...], what: str,
              how_to_build: str) -> dict[str, Any]:
    """The metadata JSON a complete build writes last; clear errors for missing, unfinished or foreign dirs.

    `what` names the thing ("token store"), `how_to_build` the command (and call) that (re)builds it;
    `versions` are the format versions this code reads.
    """
    meta_path = path / meta_name
    if not meta_path.is_file():
        if path.is_dir() and (path / "zarr.json").exists():
            raise IncompleteStoreError(
                f"{path} is a {what} whose build did not finish (no {meta_name}); "
                f"rerun {how_to_build} (it rebuilds it) or delete the directory"
            )
        raise StoreNotFoundError(f"no {what} at {path}; build one with {how_to_build}")
    meta = read_metadata(meta_path, what)
    found = (meta.get("format"), meta.get("format_version")) if isinstance(meta, dict) else (type(meta).__name__, None)
    if found[0] != fmt or found[1] not in versions:
        raise StoreNotFoundError(
            f"{meta_path} is not a {what} of format {fmt} v{' or v'.join(map(str, versions))} "
            f"(found {found[0]!r} v{found[1]!r}); rebuild it with this version of zoo"
        )
    return meta


def read_metadata(path: Path, what: str) -> Any:
    """A JSON metadata file of a `what` (a store, an index, one of their arrays) through the checked JSON
    reader (bounded size and depth); a malformed one is a DamagedStoreError naming it."""
    try:
        return read_json(path)
    except ManifestError as e:
        raise DamagedStoreError(f"{what} metadata {path} is malformed: {e}; rebuild it (or republish the zoo's "
                                f"data)") from None
