"""Which files go through LFS, and which ones .gitignore drops: the preupload decisions.

The Hub, not the client, decides the upload mode: LFS when the file is large, looks binary
(the client sends its first 512 bytes for that), or matches a `filter=lfs` pattern of the
repo's .gitattributes. New repos get the Hub's default .gitattributes, so *.safetensors,
*.bin, *.npy, ... are LFS from the first commit on.
"""

from __future__ import annotations

import fnmatch

LFS_SIZE_THRESHOLD = 10_000_000  # bytes; larger files are always LFS

_MODEL_LFS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.lz4 *.mlmodel *.model *.msgpack "
    "*.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors "
    "saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
_DATASET_LFS = _MODEL_LFS + (
    "*.pcm *.sam *.raw *.aac *.flac *.mp3 *.ogg *.wav *.bmp *.gif *.png *.tiff *.jpg *.jpeg *.webp"
).split()


def default_gitattributes(repo_type: str) -> bytes:
    """The .gitattributes the Hub commits into a new repo of this type."""
    patterns = _DATASET_LFS if repo_type == "dataset" else _MODEL_LFS
    return "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in patterns).encode()


def _matches(pattern: str, path: str, *, basename_only: bool) -> bool:
    """Git-style glob, the subset .gitattributes/.gitignore files use in practice.

    A pattern without "/" matches the file name (gitignore: also any parent folder name);
    one with "/" is anchored at the repo root; "**/" spans zero or more folders; a trailing
    "/" matches everything under that folder.
    """
    if pattern.endswith("/"):
        folder = pattern.rstrip("/")
        parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        return any(_matches(folder, parent, basename_only=basename_only) for parent in parents)
    if "/" not in pattern:
        names = [path.rsplit("/", 1)[-1]] if basename_only else path.split("/")
        return any(fnmatch.fnmatchcase(name, pattern) for name in names)
    pattern = pattern.lstrip("/")
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def upload_mode(path: str, size: int, sample: bytes, gitattributes: str) -> str:
    """"lfs" or "regular", the way the Hub's preupload endpoint answers."""
    if size > LFS_SIZE_THRESHOLD or b"\0" in sample:
        return "lfs"
    for line in _lines(gitattributes):
        pattern, *attributes = line.split()
        if "filter=lfs" in attributes and _matches(pattern, path, basename_only=True):
            return "lfs"
    return "regular"


def is_ignored(path: str, gitignore: str) -> bool:
    """Whether .gitignore rules drop this path (last matching rule wins, "!" re-includes)."""
    ignored = False
    for line in _lines(gitignore):
        negated = line.startswith("!")
        if _matches(line.removeprefix("!"), path, basename_only=False):
            ignored = not negated
    return ignored
