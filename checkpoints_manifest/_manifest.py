"""The manifest: the record that makes a run directory valid, and its one JSON in/out."""

import importlib.metadata
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_bytes
from ._canonical import canonical_json
from ._environment import EnvironmentRecord
from ._errors import ManifestError, ManifestNotFoundError
from ._hashing import _size_and_sha256
from ._json import parse_json, read_json
from ._schema import check_keys, check_type, relpath_problem

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEYS = {
    "version",
    "run",
    "files",
    "checkpoints",
    "dataset_fingerprint",
    "code_version",
    "environment",
}
_OPTIONAL_KEYS = {"platform_changes"}


@dataclass(frozen=True)
class FileEntry:
    """One file of a run: its size and sha256, and the Hub commit it was published at."""

    size: int
    sha256: str
    commit: str | None = None  # None until published


@dataclass(frozen=True)
class PlatformChange:
    """A run resumed from checkpoint `step` on another platform, by explicit request: the updates
    after `step` were computed by `code_version` on `environment`."""

    step: int
    code_version: str
    environment: EnvironmentRecord


@dataclass
class Manifest:
    """Every file of a run with its hash, the complete checkpoint steps, and provenance."""

    run: str  # e.g. "toy-solu-2l-seed3"
    files: dict[str, FileEntry]  # relative POSIX path inside the run dir -> entry
    checkpoints: list[int]  # steps whose checkpoint is complete, ascending
    dataset_fingerprint: str
    code_version: str
    environment: EnvironmentRecord  # the platform of the run's first stretch
    version: int = MANIFEST_VERSION
    platform_changes: list[PlatformChange] = field(default_factory=list)  # ascending steps; [] for most runs

    def platform_of(self, step: int) -> tuple[str, EnvironmentRecord]:
        """The code version and environment that computed update `step` (checkpoint `step`'s state)."""
        latest = (self.code_version, self.environment)
        for change in self.platform_changes:
            if change.step < step:
                latest = (change.code_version, change.environment)
        return latest

    def to_json(self) -> str:
        """Canonical JSON (indent 2, sorted keys, newline): the one way a manifest is written.

        The result is checked by the same rules as `from_json`, so nothing is
        written that could not be read back.
        """
        d = {
            "version": self.version,
            "run": self.run,
            "files": {
                path: {"size": e.size, "sha256": e.sha256, "commit": e.commit}
                for path, e in self.files.items()
            },
            "checkpoints": list(self.checkpoints),
            "dataset_fingerprint": self.dataset_fingerprint,
            "code_version": self.code_version,
            "environment": self.environment.to_dict(),
        }
        if self.platform_changes:
            d["platform_changes"] = [{"step": c.step, "code_version": c.code_version,
                                      "environment": c.environment.to_dict()} for c in self.platform_changes]
        _parse(d, source=f"manifest of run {self.run!r}")
        return canonical_json(d)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = MANIFEST_NAME) -> "Manifest":
        """Parse and validate manifest JSON: the one way a manifest is read.

        Raises ManifestError naming `source`, the key or path, and what is wrong
        (unknown version, wrong type, unsafe path, unordered checkpoints, ...);
        UnsafeJSONError (a ManifestError) for JSON too large or too deep to parse.
        """
        data = text.encode("utf-8") if isinstance(text, str) else text
        return _parse(parse_json(data, source=source), source=source)


def read_manifest(run_dir: str | os.PathLike) -> Manifest:
    """Read and validate `run_dir/manifest.json`."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        d = read_json(path)
    except FileNotFoundError:
        raise ManifestNotFoundError(
            f"no {MANIFEST_NAME} in {run_dir}: a run directory is valid only once its "
            f"manifest is written (the trainer writes it last); finish or resume the run, "
            f"or download it again"
        ) from None
    except NotADirectoryError:
        raise ManifestNotFoundError(f"{run_dir} is not a directory; give the run directory that holds "
                                    f"{MANIFEST_NAME}") from None
    except OSError as e:  # e.g. manifest.json is a directory, or unreadable
        raise ManifestError(f"{path} cannot be read: {e.strerror}") from None
    return _parse(d, source=str(path))


def write_manifest(run_dir: str | os.PathLike, manifest: Manifest) -> None:
    """Write `run_dir/manifest.json` atomically; write it after the files it lists."""
    atomic_write_bytes(Path(run_dir) / MANIFEST_NAME, manifest.to_json().encode("utf-8"))


def file_entry(run_dir: str | os.PathLike, relpath: str) -> FileEntry:
    """Size and sha256 (from one read) of the existing file `run_dir/relpath`."""
    if problem := relpath_problem(relpath):
        raise ManifestError(f"file path {relpath!r} {problem}")
    size, sha256 = _size_and_sha256(Path(run_dir) / relpath)
    return FileEntry(size=size, sha256=sha256)


def code_version() -> str:
    """Version of the installed "zoo" plus "+g<12-hex sha>[.dirty]" when run from a git checkout.

    "unknown" when zoo is not installed. Dirty means tracked files differ from
    the commit (untracked files do not count, as in setuptools-scm). Without git,
    or without a commit, only the version is returned.
    """
    try:
        version = importlib.metadata.version("zoo")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    # The packages sit at the repository root; checking that the checkout's top
    # is exactly there keeps a site-packages inside some other repo from lending
    # us its commit.
    root = Path(__file__).resolve().parent.parent
    top = _git(root, "rev-parse", "--show-toplevel")
    sha = _git(root, "rev-parse", "--short=12", "HEAD")
    if top is None or sha is None or Path(top).resolve() != root:
        return version
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{version}+g{sha}" + (".dirty" if status else "")


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of a git command, or None if git is missing or fails."""
    try:
        result = subprocess.run(
            ["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _parse(d: Any, *, source: str) -> Manifest:
    """Validate a decoded manifest dict into a Manifest; errors name `source` and the key."""
    try:
        return _manifest_from_dict(d)
    except ManifestError as e:
        raise ManifestError(f"{source}: {e}") from None


def _manifest_from_dict(d: Any) -> Manifest:
    check_type(d, dict, "the manifest")
    # The version first: a manifest from another release may differ in every other key.
    if "version" in d:
        check_type(d["version"], int, "version")
    if "version" in d and d["version"] != MANIFEST_VERSION:
        raise ManifestError(
            f"version is {d['version']!r} but this code reads only manifest version "
            f"{MANIFEST_VERSION}; use the zoo release that wrote it"
        )
    check_keys(d, _KEYS | (_OPTIONAL_KEYS & d.keys()), "the manifest")
    for key in ("run", "dataset_fingerprint", "code_version"):
        check_type(d[key], str, key)
    check_type(d["files"], dict, "files")
    check_type(d["checkpoints"], list, "checkpoints")
    files = {path: _file_entry(path, entry) for path, entry in d["files"].items()}
    checkpoints = d["checkpoints"]
    for i, step in enumerate(checkpoints):
        check_type(step, int, f"checkpoints[{i}]")
        if step < 0:
            raise ManifestError(f"checkpoints[{i}] is {step}; steps are >= 0")
        if i and step <= checkpoints[i - 1]:
            raise ManifestError(
                f"checkpoints[{i}] is {step} after {checkpoints[i - 1]}; "
                f"steps must be strictly ascending"
            )
    return Manifest(
        run=d["run"],
        files=files,
        checkpoints=list(checkpoints),
        dataset_fingerprint=d["dataset_fingerprint"],
        code_version=d["code_version"],
        environment=EnvironmentRecord.from_dict(d["environment"]),
        version=d["version"],
        platform_changes=_platform_changes(d.get("platform_changes", [])),
    )


def _platform_changes(raw: Any) -> list[PlatformChange]:
    check_type(raw, list, "platform_changes")
    changes = []
    for i, item in enumerate(raw):
        where = f"platform_changes[{i}]"
        check_keys(item, {"step", "code_version", "environment"}, where)
        check_type(item["step"], int, f"{where}.step")
        check_type(item["code_version"], str, f"{where}.code_version")
        if changes and item["step"] <= changes[-1].step:
            raise ManifestError(f"{where}.step is {item['step']} after {changes[-1].step}; steps must be strictly "
                                f"ascending")
        try:
            environment = EnvironmentRecord.from_dict(item["environment"])
        except ManifestError as e:
            raise ManifestError(f"{where}: {e}") from None
        changes.append(PlatformChange(item["step"], item["code_version"], environment))
    return changes


def _file_entry(path: str, entry: Any) -> FileEntry:
    where = f"files[{path!r}]"
    if problem := relpath_problem(path):
        raise ManifestError(f"file path {path!r} {problem}")
    if path == MANIFEST_NAME:
        raise ManifestError(f"{where}: the manifest cannot list itself")
    check_keys(entry, {"size", "sha256", "commit"}, where)
    check_type(entry["size"], int, f"{where}.size")
    if entry["size"] < 0:
        raise ManifestError(f"{where}.size is {entry['size']}; sizes are >= 0")
    check_type(entry["sha256"], str, f"{where}.sha256")
    if not _SHA256.fullmatch(entry["sha256"]):
        raise ManifestError(f"{where}.sha256 {entry['sha256']!r} is not 64 lowercase hex digits")
    check_type(entry["commit"], str, f"{where}.commit", optional=True)
    return FileEntry(size=entry["size"], sha256=entry["sha256"], commit=entry["commit"])
