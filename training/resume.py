"""Which checkpoint a run goes on from: the latest listed one whose every file verifies.

Resume reads what it starts from, so it checks those bytes first: each file of the
checkpoint against the size and sha256 the manifest lists. A checkpoint with a flipped
bit, a damaged header or a missing file is skipped (and said so, with why), and the one
before it is tried. Before any update is trained, the manifest stops listing the skipped
checkpoints, so no checkpoint computed from unverified bytes is ever listed. Only the
checkpoints tried are hashed; `zoo verify` checks every file of a run.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from checkpoints_manifest import Manifest, verify
from training.checkpoint import checkpoint_relpaths
from training.errors import RunDirectoryConflictError
from training.run_dir import RunDirectory

log = logging.getLogger(__name__)


def resume_point(rd: RunDirectory, *, resume: bool) -> int | None:
    """The step of the latest listed checkpoint whose files verify; None when none does (start from step 0).

    The checkpoints after it are unlisted and removed, and a warning names each with its
    problems. Without `resume` (a finished run reopened), a final checkpoint that does not
    verify is a RunDirectoryConflictError, and nothing is changed: the run is not done.
    """
    skipped = []
    for step in reversed(rd.manifest.checkpoints):
        problems = checkpoint_problems(rd.path, rd.manifest, step)
        if not problems:
            break
        if not resume:
            raise RunDirectoryConflictError(
                f"run {rd.manifest.run!r} in {rd.path} is not done: its final checkpoint step {step} does not "
                f"verify ({'; '.join(problems)}). Rerun with --resume to train again from the latest "
                f"checkpoint that verifies")
        skipped.append(f"step {step} ({'; '.join(problems)})")
    else:
        step = None
    if skipped:
        log.warning("run %s: resuming from %s; skipped checkpoint(s) whose files do not verify against %s: %s",
                    rd.manifest.run, "the start (step 0)" if step is None else f"step {step}",
                    rd.path / "manifest.json", ", ".join(skipped))
        rd.roll_back_to(step)
    return step


def checkpoint_problems(run_dir: Path, manifest: Manifest, step: int) -> list[str]:
    """What is wrong with the files of checkpoint `step` of `run_dir` ([] when each matches `manifest`)."""
    listed = {path: manifest.files.get(path) for path in checkpoint_relpaths(step)}
    unlisted = [f"{path}: not in the manifest" for path, entry in listed.items() if entry is None]
    only = dataclasses.replace(manifest, files={path: e for path, e in listed.items() if e is not None})
    return unlisted + [str(m) for m in verify(run_dir, only)]
