"""Check a run directory against its manifest, file by file."""

import os
from dataclasses import dataclass
from pathlib import Path

from ._hashing import sha256_file
from ._manifest import FileEntry, Manifest, read_manifest
from ._schema import relpath_problem


@dataclass(frozen=True)
class Mismatch:
    """One listed file that is not as the manifest says."""

    path: str
    problem: str  # "missing" | "size" | "sha256" | "unsafe path"
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} (expected {self.expected}, found {self.actual})"


def verify(run_dir: str | os.PathLike, manifest: Manifest | None = None) -> list[Mismatch]:
    """Every file the manifest lists, checked for presence, size and sha256; [] means valid.

    Reads `run_dir/manifest.json` when `manifest` is not given. A path that is
    unsafe, or a symlink that leads out of `run_dir`, is reported and never read.
    """
    if manifest is None:
        manifest = read_manifest(run_dir)
    root = Path(run_dir).resolve()
    return [m for path in sorted(manifest.files) if (m := _check(root, path, manifest.files[path]))]


def _check(root: Path, path: str, entry: FileEntry) -> Mismatch | None:
    expected = f"{entry.size} bytes"
    if problem := relpath_problem(path):
        return Mismatch(
            path,
            "unsafe path",
            "a relative POSIX path inside the run dir",
            f"a path that {problem}",
        )
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        return Mismatch(path, "unsafe path", "a file inside the run dir", f"a link to {target}")
    if not target.exists():
        return Mismatch(path, "missing", expected, "no file")
    if not target.is_file():
        return Mismatch(path, "missing", expected, "not a regular file")
    size = target.stat().st_size
    if size != entry.size:
        return Mismatch(path, "size", expected, f"{size} bytes")
    sha256 = sha256_file(target)
    if sha256 != entry.sha256:
        return Mismatch(path, "sha256", entry.sha256, sha256)
    return None
