"""Fetch a Hub file into the standard HF cache, hashing its bytes as they arrive: every download zoo makes.

`hf_hub_download` writes a file and leaves checking it to a second pass that reads it all
back; for checkpoints that pass costs as much as the download. Here one pass does both:
the body streams from the server into a temporary file while sha256 runs over it, and the
file enters the cache only when its size and hash match the manifest. It enters in the
cache's own layout (`blobs/{etag}`, linked from `snapshots/{commit}/{path}`, a branch or
tag resolved in `refs/`), so `hf_hub_download`, offline mode and `try_to_load_from_cache`
find it as their own, and this code finds theirs.

It is also the one place that decides about the network, so that one retry policy governs
(zoo/hub/retry.py, around it): no request here retries on its own (`hf_hub_download`
retries a failing metadata request five more times, inside each of zoo's attempts), and
a cut body is resumed only when it made progress. In offline mode (HF_HUB_OFFLINE) a
file not in the cache is NotCachedError at once; a branch whose server cannot be reached
is served from the cache when it is there, as `hf_hub_download` does.

The metadata request (HEAD: etag, size, where the bytes are) goes through `huggingface_hub`,
so auth, the endpoint and its redirects are the client's. The body is read with the
standard library (proxies from the environment, as the client honours too) into one
reused buffer: about half the client's CPU per byte, which is what pays for the hash.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.file_download import HfFileMetadata, repo_folder_name
from huggingface_hub.utils import build_hf_headers

from checkpoints_manifest import MAX_JSON_BYTES, FileEntry, atomic_write_bytes
from zoo.hub import verified
from zoo.hub.errors import HubError, NotCachedError, UnsafeArtifactError, mismatch_error
from zoo.hub.retry import CONNECTION_FAULTS, transient

_BUFFER = 1 << 20
_ETAG = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z._-]{0,127}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,200}")


def cached_or_downloaded(repo_id: str, repo_type: str, path: str, revision: str,
                         entry: FileEntry | None) -> tuple[Path, str]:
    """The cache's snapshot path of `path` at `revision` (a commit, branch or tag), and the commit.

    As cached (unchecked, the caller checks), or downloaded now: with its bytes checked against
    `entry` (IntegrityError, nothing kept, if they differ), or without an entry (a manifest or
    registry, which no manifest lists) at most MAX_JSON_BYTES. Network faults are raised for
    the caller's retry policy.
    """
    if not _REVISION.fullmatch(revision) or ".." in revision:
        raise HubError(f"revision {revision!r} is not a branch, tag or commit name")
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    meta, commit = _resolve(storage, repo_id, repo_type, path, revision)
    pointer = storage / "snapshots" / commit / path
    if pointer.exists():
        return pointer, commit
    if constants.HF_HUB_OFFLINE:
        raise NotCachedError(f"{repo_id}/{path} at {commit[:12]} is not in the local cache "
                             f"({constants.HF_HUB_CACHE}) and offline mode (HF_HUB_OFFLINE=1) forbids downloading "
                             f"it; unset HF_HUB_OFFLINE to download it, or use a step that is cached")
    if meta is None:
        meta = get_hf_file_metadata(hf_hub_url(repo_id, path, repo_type=repo_type, revision=commit))
    if entry is None and meta.size is not None and meta.size > MAX_JSON_BYTES:
        raise UnsafeArtifactError(f"{repo_id}/{path} is {meta.size} bytes on the server, more than a JSON record "
                                  f"can need ({MAX_JSON_BYTES}); refused undownloaded")
    _download(storage, repo_id, path, meta, entry)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink():  # a link to a blob deleted by hand: point it at the new one
        pointer.unlink(missing_ok=True)
    try:
        pointer.symlink_to(os.path.relpath(storage / "blobs" / meta.etag, pointer.parent))
    except FileExistsError:
        pass  # another download linked it meanwhile, to the same content-named blob
    return pointer, commit


def _resolve(storage: Path, repo_id: str, repo_type: str, path: str,
             revision: str) -> tuple[HfFileMetadata | None, str]:
    """The commit `revision` names, and the file's metadata when it was asked for (online, a branch or tag).

    A branch or tag is asked of the server and its answer remembered in `refs/`; offline, or when
    the server cannot be reached, the remembered commit is used (the fault is raised without one).
    """
    if _COMMIT.fullmatch(revision):
        return None, revision
    ref = storage / "refs" / revision
    if not constants.HF_HUB_OFFLINE:
        try:
            meta = get_hf_file_metadata(hf_hub_url(repo_id, path, repo_type=repo_type, revision=revision))
        except Exception as error:
            if transient(error) is None or not ref.is_file():
                raise
        else:
            if not (meta.commit_hash and _COMMIT.fullmatch(meta.commit_hash)):
                raise UnsafeArtifactError(f"{repo_id}/{path}: the server named no commit for revision {revision!r} "
                                          f"(X-Repo-Commit {meta.commit_hash!r}); refused (is HF_ENDPOINT a Hub?)")
            if not (ref.is_file() and ref.read_text() == meta.commit_hash):
                ref.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(ref, meta.commit_hash.encode())
            return meta, meta.commit_hash
    commit = ref.read_text().strip() if ref.is_file() else ""
    if not _COMMIT.fullmatch(commit):
        raise NotCachedError(f"{repo_id}/{path}: revision {revision!r} is not in the local cache "
                             f"({constants.HF_HUB_CACHE}) and offline mode (HF_HUB_OFFLINE=1) forbids asking the "
                             f"server; unset HF_HUB_OFFLINE, or download it once while online")
    return None, commit


def _download(storage: Path, repo_id: str, path: str, meta: HfFileMetadata, entry: FileEntry | None) -> None:
    """Stream the file `meta` describes into `blobs/{etag}` (checked against `entry`, when given)."""
    if not (meta.etag and _ETAG.fullmatch(meta.etag)):  # it names a file in the cache
        raise UnsafeArtifactError(f"{repo_id}/{path}: the server's ETag {meta.etag!r} cannot name a cache file; "
                                  f"refused (is HF_ENDPOINT a Hub?)")
    blob = storage / "blobs" / meta.etag
    if blob.exists():
        return
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(f"{meta.etag}.{uuid.uuid4().hex[:8]}.incomplete")  # one per download
    limit = entry.size + 1 if entry is not None else MAX_JSON_BYTES + 1
    try:
        size, sha256 = _stream(meta.location, _headers(meta.location), partial, limit=limit)
        if entry is not None and (size, sha256) != (entry.size, entry.sha256):
            raise mismatch_error(repo_id, path, entry, size, sha256, cached=True)
        if entry is None and size >= limit:
            raise UnsafeArtifactError(f"{repo_id}/{path} is more than {MAX_JSON_BYTES} bytes, more than a JSON "
                                      f"record can need; refused, nothing kept")
        os.replace(partial, blob)
    finally:
        partial.unlink(missing_ok=True)
    verified.remember(blob, sha256)


def _headers(location: str) -> dict[str, str]:
    """The client's headers, without the token when the bytes live on another host (a CDN)."""
    headers = build_hf_headers()
    if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(constants.ENDPOINT).netloc:
        headers.pop("authorization", None)
    return headers


def _stream(url: str, headers: dict[str, str], out: Path, *, limit: int) -> tuple[int, str]:
    """GET `url` into `out`, hashing on the way; (bytes written, sha256).

    A connection cut, reset or timed out after some bytes arrived is resumed where it stopped
    (a Range request; the hash goes on); a fault that brought no byte, and an HTTP error
    status, are the caller's retry policy's. At most `limit` bytes are read: a
    server sending more is wrong already. The file is fsynced before the caller renames it
    into place, so a crash never leaves a short blob under the good name.
    """
    progress = _Progress()
    with open(out, "wb") as file:
        while True:
            before = progress.size
            try:
                _receive(url, headers, file, progress, limit)
                break
            except urllib.error.HTTPError:
                raise
            except CONNECTION_FAULTS:
                if progress.size == before:
                    raise
        file.flush()
        os.fsync(file.fileno())
    return progress.size, progress.digest.hexdigest()


@dataclass
class _Progress:
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


def _receive(url: str, headers: dict[str, str], file: BinaryIO, progress: _Progress, limit: int) -> None:
    """Append the body from byte `progress.size` on to `file` and the hash (all of it again if the
    server ignores the Range)."""
    ranged = {"Range": f"bytes={progress.size}-"} if progress.size else {}
    request = urllib.request.Request(url, headers={**headers, **ranged, "Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
        if progress.size and response.status != 206:  # a whole body: start over
            file.seek(0)
            file.truncate()
            progress.size, progress.digest = 0, hashlib.sha256()
        buffer = memoryview(bytearray(_BUFFER))
        while progress.size < limit and (n := response.readinto(buffer[:min(_BUFFER, limit - progress.size)])):
            progress.digest.update(buffer[:n])
            file.write(buffer[:n])
            progress.size += n
        if progress.size < limit and response.length:  # the connection closed before the promised length
            raise http.client.IncompleteRead(b"", response.length)
