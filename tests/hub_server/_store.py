"""Repos on disk: content-addressed blobs, immutable commits, mutable refs.

Layout under the server root, one folder per repo:

    {type}s/{namespace}/{name}/repo.json          creation date, visibility (written last)
                              /refs.json          {"branches": {name: sha}, "tags": {name: sha}}
                              /commits/{sha}.json immutable; sha = sha1 of the file's bytes
                              /blobs/{sha256}     file contents, named by their sha256

A commit stores the whole flat file table (path -> entry) and its parent, so any old
revision stays readable after newer commits: nothing is ever rewritten but refs.json.
Every write goes to a temp file in the same folder, is fsynced, then renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ._errors import HubError, repo_not_found, revision_not_found

AUTHOR = "zoo-tester"
_SHA1 = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Repo:
    """A repo as the URLs name it: type ("model" or "dataset") and "namespace/name"."""

    type: str
    id: str

    @property
    def url_prefix(self) -> str:
        """Prefix of web and git URLs: "" for models, "datasets/" for datasets."""
        return "" if self.type == "model" else f"{self.type}s/"


@dataclass(frozen=True)
class Entry:
    """One file of a commit. `oid` is its git blob id (of the LFS pointer for LFS files)."""

    sha256: str
    size: int
    lfs: bool
    oid: str

    @property
    def pointer_size(self) -> int:
        """Size of the LFS pointer git would store instead of the content."""
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot: the full file table plus history links."""

    id: str
    parents: tuple[str, ...]
    title: str
    message: str
    date: str
    files: dict[str, Entry]


def git_blob_oid(data: bytes) -> str:
    """Git's blob id (sha1 of "blob {len}\\0" + data): the Hub's ETag for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer text that stands in for an LFS file in git."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_entry(sha256: str, size: int) -> Entry:
    """Entry of an LFS file, whose git oid is that of its pointer."""
    return Entry(sha256, size, True, git_blob_oid(lfs_pointer(sha256, size)))


def _now() -> str:
    """Hub date format, e.g. 2024-05-01T12:00:00.123Z (what huggingface_hub parses)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """All repos under one root. Hold `lock` for read-modify-write of refs (commits, tags)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self._commits: dict[tuple[Repo, str], Commit] = {}

    # --- repos -------------------------------------------------------------------------
    def _dir(self, repo: Repo) -> Path:
        return self.root / f"{repo.type}s" / repo.id

    def exists(self, repo: Repo) -> bool:
        """Whether the repo was created (repo.json is written last, so half-made repos don't count)."""
        return (self._dir(repo) / "repo.json").is_file()

    def require(self, repo: Repo) -> Path:
        """The repo's folder, or RepoNotFound."""
        if not self.exists(repo):
            raise repo_not_found(repo.id, repo.type)
        return self._dir(repo)

    def meta(self, repo: Repo) -> dict:
        """repo.json: createdAt and private."""
        return json.loads((self.require(repo) / "repo.json").read_bytes())

    def create(self, repo: Repo, *, private: bool, gitattributes: bytes) -> bool:
        """Create with an "initial commit" holding .gitattributes, as the Hub does; False if it exists."""
        with self.lock:
            if self.exists(repo):
                return False
            folder = self._dir(repo)
            (folder / "commits").mkdir(parents=True, exist_ok=True)
            (folder / "blobs").mkdir(exist_ok=True)
            _atomic_write(folder / "refs.json", json.dumps({"branches": {}, "tags": {}}).encode())
            entry = self.add_regular(repo, gitattributes)
            self.write_commit(repo, "main", None, "initial commit", "", {".gitattributes": entry})
            meta = {"createdAt": _now(), "private": private}
            _atomic_write(folder / "repo.json", json.dumps(meta).encode())
            return True

    # --- refs --------------------------------------------------------------------------
    def refs(self, repo: Repo) -> dict[str, dict[str, str]]:
        """{"branches": {name: sha}, "tags": {name: sha}}."""
        return json.loads((self._dir(repo) / "refs.json").read_bytes())

    def set_ref(self, repo: Repo, kind: str, name: str, sha: str | None) -> None:
        """Point branch/tag `name` at `sha`, or delete it when sha is None."""
        with self.lock:
            refs = self.refs(repo)
            if sha is None:
                del refs[kind][name]
            else:
                refs[kind][name] = sha
            _atomic_write(self._dir(repo) / "refs.json", json.dumps(refs, sort_keys=True).encode())

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """Branch, tag (bare or refs/heads|tags/...) or full commit sha -> commit."""
        self.require(repo)
        refs = self.refs(repo)
        name = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        sha = refs["branches"].get(name) or refs["tags"].get(name)
        if sha is None and _SHA1.fullmatch(revision) and self._commit_path(repo, revision).is_file():
            sha = revision
        if sha is None:
            raise revision_not_found(revision)
        return self.load_commit(repo, sha)

    # --- commits -----------------------------------------------------------------------
    def _commit_path(self, repo: Repo, sha: str) -> Path:
        return self._dir(repo) / "commits" / f"{sha}.json"

    def load_commit(self, repo: Repo, sha: str) -> Commit:
        """Read (and memoize: commits never change) one commit."""
        key = (repo, sha)
        if key not in self._commits:
            raw = json.loads(self._commit_path(repo, sha).read_bytes())
            files = {path: Entry(**entry) for path, entry in raw["files"].items()}
            self._commits[key] = Commit(
                sha, tuple(raw["parents"]), raw["title"], raw["message"], raw["date"], files
            )
        return self._commits[key]

    def history(self, repo: Repo, sha: str) -> list[Commit]:
        """First-parent history from `sha`, newest first."""
        commits = [self.load_commit(repo, sha)]
        while commits[-1].parents:
            commits.append(self.load_commit(repo, commits[-1].parents[0]))
        return commits

    def write_commit(
        self, repo: Repo, branch: str, parent: str | None, title: str, message: str, files: dict[str, Entry]
    ) -> Commit:
        """Write a commit on top of `parent` and move `branch` to it. Caller holds `lock`."""
        raw = {
            "parents": [parent] if parent else [],
            "title": title,
            "message": message,
            "date": _now(),
            "authors": [AUTHOR],
            "files": {path: asdict(files[path]) for path in sorted(files)},
        }
        data = json.dumps(raw, sort_keys=True).encode()
        sha = hashlib.sha1(data).hexdigest()
        _atomic_write(self._commit_path(repo, sha), data)
        self.set_ref(repo, "branches", branch, sha)
        return self.load_commit(repo, sha)

    # --- blobs -------------------------------------------------------------------------
    def blob_path(self, repo: Repo, sha256: str) -> Path:
        """Where the content with this sha256 lives (whether or not it exists yet)."""
        if not _SHA256.fullmatch(sha256):
            raise HubError(400, f"'{sha256}' is not a sha256 (64 lowercase hex digits)")
        return self._dir(repo) / "blobs" / sha256

    def blob_size(self, repo: Repo, sha256: str) -> int | None:
        """Size of a stored blob, None when it was never uploaded."""
        path = self.blob_path(repo, sha256)
        return path.stat().st_size if path.is_file() else None

    def read(self, repo: Repo, entry: Entry) -> bytes:
        """Whole content of a (small) file such as .gitattributes or README.md."""
        return self.blob_path(repo, entry.sha256).read_bytes()

    def add_regular(self, repo: Repo, data: bytes) -> Entry:
        """Store bytes committed inline (not through LFS)."""
        sha256, size = self.add_blob(repo, [data])
        return Entry(sha256, size, False, git_blob_oid(data))

    def add_blob(
        self, repo: Repo, chunks: Iterable[bytes], *, sha256: str | None = None, size: int | None = None
    ) -> tuple[str, int]:
        """Stream content into the blob store; when sha256/size are given, refuse other bytes.

        Nothing becomes visible unless the whole content arrived and matched: an upload cut
        off midway (client killed) leaves no blob behind.
        """
        folder = self._dir(repo) / "blobs"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload.", suffix=".tmp")
        try:
            digest, written = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    written += len(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            actual = digest.hexdigest()
            if (sha256 is not None and actual != sha256) or (size is not None and written != size):
                raise HubError(
                    400,
                    f"Uploaded content has sha256 {actual} and size {written}, but the LFS batch "
                    f"request announced {sha256} and {size}; upload the bytes the oid names.",
                )
            os.replace(tmp, folder / actual)
            return actual, written
        finally:
            Path(tmp).unlink(missing_ok=True)
