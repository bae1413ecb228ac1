"""A run directory: config, loss log, checkpoints, and the manifest that makes them valid.

Every checkpoint commit: checkpoint directory (with its stretch of the loss log)
renamed into place → manifest rewritten atomically. A crash anywhere leaves the
previous manifest in force; `open_run` removes what a crash left behind
(checkpoint directories the manifest does not list).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from checkpoints_manifest import (
    LockHeldError,
    acquire_lock,
    MANIFEST_NAME,
    EnvironmentRecord,
    Manifest,
    PlatformChange,
    ManifestError,
    atomic_write_bytes,
    canonical_json,
    code_version,
    discard_temp_files,
    file_entry,
    parse_json,
    read_manifest,
    write_manifest,
)
from training import checkpoint
from training.errors import (
    CheckpointError,
    PlatformChangedError,
    RunDirectoryConflictError,
    RunLockedError,
    StorageError,
    describe_os_error,
)

CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"
SNAPSHOTS_IN_FLIGHT = 2  # host copies of the full state waiting to be written, at most
log = logging.getLogger(__name__)


@dataclass
class RunDirectory:
    """An open, locked run directory. Use `open_run`; call `close` (or use `with`).

    Checkpoints are written by one background thread, one at a time, so training
    goes on while earlier checkpoints are written and fsynced. Commits stay in
    order, at most SNAPSHOTS_IN_FLIGHT snapshots wait in memory, and a failed write
    surfaces at a later commit or at `flush`; no checkpoint queued after it is written
    (its loss log would lack the failed one's updates).
    """

    path: Path
    manifest: Manifest
    _lock_fd: int
    _writer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "checkpoint-writer"))
    _pending: deque[Future] = field(default_factory=deque)
    _failed: bool = False  # a write failed: nothing queued after it is written

    @property
    def latest_step(self) -> int | None:
        return self.manifest.checkpoints[-1] if self.manifest.checkpoints else None

    def commit_checkpoint(self, snapshot: checkpoint.Snapshot) -> None:
        """Queue a checkpoint: it is written, then the manifest that lists it (last). Waits only while
        SNAPSHOTS_IN_FLIGHT earlier ones are still being written."""
        while len(self._pending) >= SNAPSHOTS_IN_FLIGHT:
            self._pending.popleft().result()
        self._pending.append(self._writer.submit(self._write, snapshot))

    def flush(self) -> None:
        """Wait for every checkpoint being written; raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def _write(self, snapshot: checkpoint.Snapshot) -> None:
        if self._failed:
            return  # an earlier checkpoint failed: its error (raised once, in order) says what to do
        try:
            self._write_and_list(snapshot)
        except BaseException:
            self._failed = True
            raise

    def _write_and_list(self, snapshot: checkpoint.Snapshot) -> None:
        files = checkpoint.write(self.path, snapshot)
        entries = dict(self.manifest.files)
        entries.update({rel: file_entry(self.path, rel) for rel in files})
        steps = sorted({*self.manifest.checkpoints, snapshot.loop.step})
        manifest = replace(self.manifest, files=entries, checkpoints=steps)
        try:
            write_manifest(self.path, manifest)
        except OSError as e:  # the checkpoint stays unlisted: not valid, discarded on resume
            raise CheckpointError(
                f"could not list checkpoint step {snapshot.loop.step} in {self.path / MANIFEST_NAME}: "
                f"{describe_os_error(e)}. Earlier checkpoints are intact; free space (or fix the directory) "
                f"and rerun with --resume."
            ) from e
        self.manifest = manifest

    def roll_back_to(self, step: int | None) -> None:
        """List only the checkpoints up to `step` (None: none), then remove the others' directories.

        The platform changes recorded at `step` or later go with the checkpoints they described."""
        keep = [s for s in self.manifest.checkpoints if step is not None and s <= step]
        dropped = tuple(f"checkpoints/{checkpoint.checkpoint_dir_name(s)}/" for s in self.manifest.checkpoints
                        if s not in keep)
        manifest = replace(self.manifest, checkpoints=keep,
                           files={p: e for p, e in self.manifest.files.items() if not p.startswith(dropped)},
                           platform_changes=[c for c in self.manifest.platform_changes
                                             if step is not None and c.step < step])
        try:
            write_manifest(self.path, manifest)
            self.manifest = manifest
            _discard_unlisted_checkpoints(self.path, {checkpoint.checkpoint_dir_name(s) for s in keep})
        except OSError as e:
            raise _storage_error(self.path, e) from e

    def adopt_platform(self, here: EnvironmentRecord, code: str, *, allow_change: bool) -> None:
        """Go on from the latest listed checkpoint on platform (`here`, `code`): see `check_platform`
        (`open_run` checked the latest listed when it opened; after a roll-back to an earlier one, the
        check is for that one). The change, if allowed, is written with the next checkpoint's manifest."""
        self.manifest = check_platform(self.path, self.manifest, here, code, allow_change=allow_change)

    def close(self) -> None:
        """Finish the checkpoints in flight, then release the run's lock."""
        try:
            self.flush()
        finally:
            self._writer.shutdown()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run(path: Path, *, run: str, config: dict[str, Any], dataset_fingerprint: str,
             environment: EnvironmentRecord, resume: bool, final_step: int,
             allow_platform_change: bool = False) -> RunDirectory:
    """Create or reopen a run directory for training on the platform `environment`, refusing anything
    that is not this run.

    - another process holds the run's lock → `RunLockedError`;
    - files of another run (a different config.json, naming the keys that differ, or files but no
      config) → `RunDirectoryConflictError`; but a run that never completed an update (nothing
      listed after step 0) starts again with the new config, since nothing trained is lost;
    - an unfinished run (last checkpoint before `final_step`) without `resume` →
      `RunDirectoryConflictError` (never overwrite); a finished one simply reopens;
    - a dataset whose fingerprint differs from the manifest's → `RunDirectoryConflictError`;
    - an unfinished run trained on another platform → `PlatformChangedError` (see `check_platform`),
      before anything is changed;
    - a directory that cannot be written (full, read-only) → `StorageError`.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(path, run)
    except OSError as e:
        raise _storage_error(path, e) from e
    try:
        config_bytes = canonical_json(config).encode()
        discard_temp_files(path)  # a write killed mid-way (config or manifest) left it; never listed
        _check_same_run(path, config, config_bytes)
        manifest_path = path / MANIFEST_NAME
        if manifest_path.exists():
            manifest = read_manifest(path)
            if not resume and manifest.checkpoints[-1:] != [final_step]:
                raise RunDirectoryConflictError(
                    f"{path} already holds run {manifest.run!r} with checkpoints up to step "
                    f"{manifest.checkpoints[-1] if manifest.checkpoints else 'none'}; pass --resume to continue it, "
                    f"or choose another --out"
                )
            if manifest.dataset_fingerprint != dataset_fingerprint:
                raise RunDirectoryConflictError(
                    f"{path} was trained on dataset {manifest.dataset_fingerprint[:16]}…, but the dataset "
                    f"prepared now has fingerprint {dataset_fingerprint[:16]}…; resuming would mix data. "
                    f"Rebuild the original dataset or train into another --out"
                )
            if manifest.checkpoints[-1:] != [final_step]:
                manifest = check_platform(path, manifest, environment, code_version(),
                                          allow_change=allow_platform_change)
            _discard_unlisted_checkpoints(path, {checkpoint.checkpoint_dir_name(s) for s in manifest.checkpoints})
        else:
            _discard_unlisted_checkpoints(path, set())
            atomic_write_bytes(path / CONFIG_NAME, config_bytes)
            manifest = Manifest(
                run=run,
                files={CONFIG_NAME: file_entry(path, CONFIG_NAME)},
                checkpoints=[],
                dataset_fingerprint=dataset_fingerprint,
                code_version=code_version(),
                environment=environment,
            )
        return RunDirectory(path, manifest, lock_fd)
    except OSError as e:
        os.close(lock_fd)
        raise _storage_error(path, e) from e
    except BaseException:
        os.close(lock_fd)
        raise


def check_platform(path: Path, manifest: Manifest, here: EnvironmentRecord, code: str, *,
                   allow_change: bool) -> Manifest:
    """The manifest to resume `path` with on platform (`here`, `code`).

    A platform other than the one that trained the run's latest stretch (another CPU level,
    device, torch, precision setting, code version: whatever `bitwise_comparable` names) is
    refused with PlatformChangedError naming each difference, unless `allow_change`: then the
    manifest records the change at the checkpoint the run resumes from, and replay compares
    each stretch with its own platform.
    """
    if not manifest.checkpoints:  # nothing kept to mix with: the run starts afresh, on this platform
        return replace(manifest, environment=here, code_version=code, platform_changes=[])
    step = manifest.checkpoints[-1]
    their_code, theirs = manifest.platform_of(step + 1)
    differences = here.bitwise_comparable(theirs)
    if code != their_code:
        differences.append(f"code version {code} here vs {their_code} in the manifest")
    if not differences:
        return manifest
    if not allow_change:
        raise PlatformChangedError(
            f"{path} was trained up to step {step} on another platform: {'; '.join(differences)}. Resuming here "
            f"would mix two platforms in one run. Resume it where it was trained, or continue here with "
            f"--allow-platform-change (allow_platform_change=True): the manifest then records the change at step "
            f"{step}")
    earlier = [c for c in manifest.platform_changes if c.step < step]  # later ones left with the checkpoints after it
    return replace(manifest, platform_changes=[*earlier, PlatformChange(step, code, here)])


def _storage_error(path: Path, e: OSError) -> StorageError:
    return StorageError(f"cannot write run directory {path}: {describe_os_error(e)}. Completed checkpoints "
                        f"are intact; free space or make it writable, then rerun with --resume")


def _lock(path: Path, run: str) -> int:
    try:
        return acquire_lock(path / LOCK_NAME)
    except LockHeldError:
        raise RunLockedError(f"run {run!r} in {path} is being written by another process; "
                             f"wait for it to finish (or stop it) and try again") from None


def _check_same_run(path: Path, config: dict[str, Any], config_bytes: bytes) -> None:
    config_path = path / CONFIG_NAME
    if config_path.exists():
        recorded = config_path.read_bytes()
        if recorded == config_bytes:
            return
        differences = config_differences(recorded, config)
        if never_updated(path):
            log.warning("%s never completed an update and its config differs from the spec's (%s): starting it "
                        "again with the spec's config", path, differences)
            (path / MANIFEST_NAME).unlink(missing_ok=True)  # no manifest: a new run, whose first writes replace all
            return
        raise RunDirectoryConflictError(
            f"{config_path} describes a different run: {differences}; refusing to overwrite its trained "
            f"checkpoints. Choose another --out, or delete that directory yourself"
        )
    foreign = [p.name for p in path.iterdir() if p.name != LOCK_NAME]
    if foreign:
        raise RunDirectoryConflictError(
            f"{path} holds files that are not a zoo run ({', '.join(sorted(foreign)[:5])}); "
            f"refusing to write into it. Choose another --out"
        )


def config_differences(recorded: bytes, config: dict[str, Any]) -> str:
    """The keys in which a config.json (`recorded`) differs from `config`, with both values."""
    try:
        old = _flat(parse_json(recorded, source=CONFIG_NAME))
    except ManifestError as e:
        return f"it is not a config this code can read ({e})"
    new = _flat(config)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "(absent)") != new.get(k, "(absent)"))
    shown = [f"{k} is {old.get(k, '(absent)')!r} there, {new.get(k, '(absent)')!r} in the spec" for k in keys[:8]]
    return "; ".join(shown) + (f"; and {len(keys) - 8} more" if len(keys) > 8 else "")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {"training.steps": 24, ...}."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def never_updated(path: Path) -> bool:
    """Whether the run in `path` lists no checkpoint after step 0 (no manifest: none at all)."""
    try:
        return read_manifest(path).checkpoints in ([], [0])
    except FileNotFoundError:
        return True
    except ManifestError:
        return False


def _discard_unlisted_checkpoints(path: Path, keep: set[str]) -> None:
    """Remove checkpoint directories (and `.partial` ones) that no manifest lists: not valid yet."""
    folder = path / "checkpoints"
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name not in keep:
            shutil.rmtree(child)
