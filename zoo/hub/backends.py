"""Where published repos live: the Hugging Face Hub (any Hub-API server) or a plain directory root.

Both hold the same layout (`{org}/{name}/…` for models, `datasets/{org}/{name}/…` for
datasets, as in Hub URLs) behind the same few operations, so publish and load are
written once. Only the Hub has commits and revisions; a directory root reports none.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from checkpoints_manifest import FileEntry, atomic_write, atomic_write_bytes, sha256_bytes, sha256_file
from zoo.hub import verified
from zoo.hub.stream_download import cached_or_downloaded
from zoo.hub.errors import HubError, HubUnavailableError, PublishError, UnknownModelError, UnsafeArtifactError
from zoo.hub.retry import retrying

Content = bytes | Path  # a file to publish: in memory (cards, manifests) or on disk


@dataclass(frozen=True)
class Repo:
    """One published repo: `org/name` and whether it is a model (a run) or a dataset (a zoo's data)."""

    id: str
    type: str  # "model" | "dataset"

    def __post_init__(self) -> None:
        # Names become URL and filesystem paths: refuse anything that could leave its folder.
        if not (isinstance(self.id, str) and _REPO_ID.fullmatch(self.id) and ".." not in self.id
                and len(self.id) <= 200):
            raise HubError(f"{self.id!r} is not a valid repo name: org, zoo and model names use letters, digits, "
                           f"'-', '_' and '.' (no '..', no '/'), e.g. org='me', model='solu-2l'")


_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")

class Backend(Protocol):
    """The operations publish and load need from a place that holds repos."""

    def head(self, repo: Repo) -> str | None:
        """The commit main points at; None if the repo does not exist or the backend has no commits."""

    def missing(self, repo: Repo, files: dict[str, Content]) -> list[str]:
        """The paths of `files` that the repo does not hold with exactly these bytes."""

    def read(self, repo: Repo, path: str) -> bytes | None:
        """The current bytes of a published file, or None if the repo or file does not exist."""

    def commit(self, repo: Repo, files: dict[str, Content], message: str, parent: str | None) -> str | None:
        """Add `files` to the repo in one commit on top of `parent` (the head the caller saw; None: a new
        repo), creating the repo; the new commit, or None without commits. PublishError if someone else
        moved the head meanwhile."""

    def tag(self, repo: Repo, name: str, commit: str | None) -> None:
        """Tag `commit` as `name` unless the tag exists (tags never move)."""

    def fetch(self, repo: Repo, path: str, revision: str | None,
              expected: FileEntry | None = None) -> tuple[Path, str | None]:
        """A local path holding the published file, and the commit it came from. The bytes are unverified,
        except that a file downloaded now may be checked against `expected` as it arrives (IntegrityError)."""

    def evict(self, local: Path) -> None:
        """Forget a fetched copy that failed verification, so it is never served as good again."""

    @property
    def caches(self) -> bool:
        """Whether fetched files are copies in a cache (the Hub), not the published files themselves."""


def backend_for(root: str | os.PathLike | None) -> Backend:
    """The Hub (HF_ENDPOINT) when `root` is None, else the directory `root` (a path or `file://` URL)."""
    if root is None:
        return HubBackend()
    text = os.fspath(root)
    return DirBackend(Path(text.removeprefix("file://")))


def _bytes_of(content: Content) -> bytes:
    return content if isinstance(content, bytes) else content.read_bytes()


def _sha256_of(content: Content) -> str:
    return sha256_bytes(content) if isinstance(content, bytes) else sha256_file(content)


def _git_sha1(content: Content) -> str:
    """The id git (and the Hub) gives a regular file: sha1 of "blob {size}\\0" + bytes."""
    data = _bytes_of(content)
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubBackend:
    """Repos on the Hub, or any server speaking its API at HF_ENDPOINT."""

    caches = True

    def __init__(self) -> None:
        self.api = HfApi()  # built now, so it takes the endpoint in force at this call

    def head(self, repo: Repo) -> str | None:
        def call() -> str | None:
            try:
                return self.api.repo_info(repo.id, repo_type=repo.type).sha
            except RepositoryNotFoundError:
                return None
        return retrying(f"reading the head of {repo.type} repo {repo.id}", call)

    def missing(self, repo: Repo, files: dict[str, Content]) -> list[str]:
        head = self.head(repo)
        if head is None:
            return sorted(files)
        remote = {}
        tree = retrying(f"listing {repo.type} repo {repo.id}", lambda: list(
            self.api.list_repo_tree(repo.id, repo_type=repo.type, revision=head, recursive=True)))
        for item in tree:
            if hasattr(item, "blob_id"):  # a file, not a folder
                remote[item.path] = item
        return sorted(path for path, content in files.items() if not _holds(remote.get(path), content))

    def read(self, repo: Repo, path: str) -> bytes | None:
        try:
            return self.fetch(repo, path, None)[0].read_bytes()
        except UnknownModelError:
            return None

    def commit(self, repo: Repo, files: dict[str, Content], message: str, parent: str | None) -> str | None:
        if parent is None:
            retrying(f"creating {repo.type} repo {repo.id}",
                     lambda: self.api.create_repo(repo.id, repo_type=repo.type, exist_ok=True))
            parent = self.head(repo)  # the repo's initial commit (or a racing publisher's: checked below)
        # One create_commit with every file: one commit however many files (upload_folder may split).
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes)
                                         else str(content)) for path, content in sorted(files.items())]

        def attempt() -> str:
            head = self.head(repo)
            if head == parent:
                try:
                    return self.api.create_commit(repo.id, operations, commit_message=message, repo_type=repo.type,
                                                  parent_commit=parent).oid
                except HfHubHTTPError as error:
                    if error.response is None or error.response.status_code != 412:
                        raise
                    head = self.head(repo)  # the Hub refused ours: a commit landed after our check
            if not self.missing(repo, files):  # an earlier attempt landed, only its answer was lost
                return head
            raise PublishError(f"{repo.type} repo {repo.id} changed while publishing (head {head}, expected "
                               f"{parent}): another publish or writer committed to it. Nothing half-done was "
                               f"listed; publish again (once the other publish has finished)")
        return retrying(f"commit of {len(files)} file(s) to {repo.type} repo {repo.id}", attempt)

    def tag(self, repo: Repo, name: str, commit: str | None) -> None:
        retrying(f"tagging {repo.id} {name}", lambda: self.api.create_tag(
            repo.id, tag=name, revision=commit, repo_type=repo.type, exist_ok=True))

    def fetch(self, repo: Repo, path: str, revision: str | None,
              expected: FileEntry | None = None) -> tuple[Path, str | None]:
        try:
            return retrying(f"download of {repo.id}/{path}", lambda: cached_or_downloaded(
                repo.id, repo.type, path, revision or "main", expected))
        except RevisionNotFoundError:
            raise UnknownModelError(f"{repo.type} repo {repo.id} has no revision {revision!r}; "
                                    f"use a branch, a tag (e.g. step{{N}}) or a commit sha it has") from None
        except RepositoryNotFoundError:
            raise UnknownModelError(f"no {repo.type} repo {repo.id} at {self.api.endpoint}; "
                                    f"check org= (and HF_ENDPOINT), or publish it first") from None
        except EntryNotFoundError:
            raise UnknownModelError(f"{repo.type} repo {repo.id} has no file {path}; "
                                    f"publish the run again to complete it") from None
        except (HfHubHTTPError, urllib.error.HTTPError) as e:  # 401/403 and the like: not transient
            status = e.code if isinstance(e, urllib.error.HTTPError) else e.response.status_code
            raise HubUnavailableError(f"download of {repo.id}/{path} was refused: HTTP {status}; check access "
                                      f"to the repo (HF_TOKEN) and HF_ENDPOINT, and try again") from None

    def evict(self, local: Path) -> None:
        blob = local.resolve()  # the snapshot entry is a link to a content-named blob
        verified.forget(local)
        local.unlink(missing_ok=True)
        if blob != local:
            blob.unlink(missing_ok=True)


def _holds(remote: object | None, content: Content) -> bool:
    if remote is None:
        return False
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        return lfs.sha256 == _sha256_of(content)
    return remote.blob_id == _git_sha1(content)


class DirBackend:
    """Repos as plain directories under a root (a shared cluster filesystem): no commits, no revisions."""

    caches = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, repo: Repo) -> Path:
        return self.root / ("datasets" if repo.type == "dataset" else "") / repo.id

    def _file(self, repo: Repo, path: str) -> Path:
        """`path` inside the repo's folder, refused if it or a folder on the way is a symlink (it could
        lead anywhere on this machine) or the path leaves the folder."""
        base = self._dir(repo)
        there = base / path
        if ".." in Path(path).parts or Path(path).is_absolute():
            raise UnsafeArtifactError(f"{repo.id}: path {path!r} leaves the repo folder; refused")
        rel = there.relative_to(self.root)
        for step in [*reversed(rel.parents[:-1]), rel]:  # every folder under the root, then the file
            if (self.root / step).is_symlink():
                raise UnsafeArtifactError(f"{repo.id}: {self.root / step} is a symlink; a directory root holds "
                                          f"plain files only (a link could lead anywhere): refused. Replace it by "
                                          f"the file, or publish the run again")
        return there

    def head(self, repo: Repo) -> str | None:
        return None

    def missing(self, repo: Repo, files: dict[str, Content]) -> list[str]:
        out = []
        for path, content in sorted(files.items()):
            there = self._file(repo, path)
            same = (there.is_file() and there.stat().st_size == len(_bytes_of(content))
                    and sha256_file(there) == _sha256_of(content))
            if not same:
                out.append(path)
        return out

    def read(self, repo: Repo, path: str) -> bytes | None:
        there = self._file(repo, path)
        return there.read_bytes() if there.is_file() else None

    def commit(self, repo: Repo, files: dict[str, Content], message: str, parent: str | None) -> str | None:
        for path, content in sorted(files.items()):
            target = self._file(repo, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                atomic_write_bytes(target, content)
            else:
                atomic_write(target, lambda tmp, source=content: shutil.copyfile(source, tmp))
        return None

    def tag(self, repo: Repo, name: str, commit: str | None) -> None:
        return None  # a directory keeps one version; there is nothing to tag

    def fetch(self, repo: Repo, path: str, revision: str | None,
              expected: FileEntry | None = None) -> tuple[Path, str | None]:
        if revision is not None:
            raise HubError(f"revision={revision!r} was given, but the directory root {self.root} keeps one "
                           f"version of each repo and has no revisions; drop revision= or load from the Hub")
        there = self._file(repo, path)
        if not there.is_file():
            if not self._dir(repo).is_dir():
                raise UnknownModelError(f"no {repo.type} repo {repo.id} under {self.root}; "
                                        f"check org= and root=, or publish it first")
            raise UnknownModelError(f"{repo.type} repo {repo.id} under {self.root} has no file {path}; "
                                    f"publish the run again to complete it")
        return there, None

    def evict(self, local: Path) -> None:
        verified.forget(local)  # the root is the source, not a cache: only its verification record goes
