"""Download a Hub file into the standard HF cache, hashing its bytes as they arrive.

`hf_hub_download` writes a file and leaves checking it to a second pass that reads it all
back; for checkpoints that pass costs as much as the download. Here one pass does both:
the body streams from the server into a temporary file while sha256 runs over it, and the
file enters the cache only when its size and hash match the manifest. It enters in the
cache's own layout (`blobs/{etag}`, linked from `snapshots/{commit}/{path}`), so
`hf_hub_download`, offline mode and `try_to_load_from_cache` find it as their own.

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
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import build_hf_headers

from checkpoints_manifest import FileEntry
from zoo.hub import verified
from zoo.hub.errors import UnsafeArtifactError, mismatch_error
from zoo.hub.retry import CONNECTION_FAULTS

_BUFFER = 1 << 20
_ETAG = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z._-]{0,127}")
_RETRIES = 5  # connection faults in a row without a byte of progress


def cached_or_downloaded(repo_id: str, repo_type: str, path: str, commit: str, entry: FileEntry) -> Path:
    """The cache's snapshot path of `path` at `commit`: as cached (unchecked, the caller checks), or
    downloaded now with its bytes checked against `entry` (IntegrityError, nothing kept, if they differ)."""
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    pointer = storage / "snapshots" / commit / path
    if pointer.exists():
        return pointer
    meta = get_hf_file_metadata(hf_hub_url(repo_id, path, repo_type=repo_type, revision=commit))
    if not (meta.etag and _ETAG.fullmatch(meta.etag)):  # it names a file in the cache
        raise UnsafeArtifactError(f"{repo_id}/{path}: the server's ETag {meta.etag!r} cannot name a cache file; "
                                  f"refused (is HF_ENDPOINT a Hub?)")
    blob = storage / "blobs" / meta.etag
    if not blob.exists():
        blob.parent.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(f"{meta.etag}.{uuid.uuid4().hex[:8]}.incomplete")  # one per download
        try:
            size, sha256 = _stream(meta.location, _headers(meta.location), partial, limit=entry.size + 1)
            if (size, sha256) != (entry.size, entry.sha256):
                raise mismatch_error(repo_id, path, entry, size, sha256)
            os.replace(partial, blob)
        finally:
            partial.unlink(missing_ok=True)
        verified.remember(blob, sha256)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink():  # a link to a blob deleted by hand: point it at the new one
        pointer.unlink(missing_ok=True)
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except FileExistsError:
        pass  # another download linked it meanwhile, to the same content-named blob
    return pointer


def _headers(location: str) -> dict[str, str]:
    """The client's headers, without the token when the bytes live on another host (a CDN)."""
    headers = build_hf_headers()
    if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(constants.ENDPOINT).netloc:
        headers.pop("authorization", None)
    return headers


def _stream(url: str, headers: dict[str, str], out: Path, *, limit: int) -> tuple[int, str]:
    """GET `url` into `out`, hashing on the way; (bytes written, sha256).

    A connection cut, reset or timed out is resumed where it stopped (a Range request; the
    hash goes on), up to `_RETRIES` times in a row without progress, as `hf_hub_download`
    does; an HTTP error status is the caller's to retry. At most `limit` bytes are read: a
    server sending more is wrong already. The file is fsynced before the caller renames it
    into place, so a crash never leaves a short blob under the good name.
    """
    progress = _Progress()
    failures = 0
    with open(out, "wb") as file:
        while True:
            before = progress.size
            try:
                _receive(url, headers, file, progress, limit)
                break
            except urllib.error.HTTPError:
                raise
            except CONNECTION_FAULTS:
                failures = 0 if progress.size > before else failures + 1
                if failures >= _RETRIES:
                    raise
                time.sleep(0.1 * failures)
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
