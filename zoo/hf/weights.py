"""The weights transformers loads for a zoo checkpoint are checked against the run's manifest first.

zoo verifies every byte it reads; transformers reads what it downloads as it is. So before
transformers reads a checkpoint of a run repo, the checkpoint's `model.safetensors` goes
through zoo's own verified fetch (sha256 against manifest.json, a bad copy evicted), and
transformers is then pointed at the commit that manifest came from: it finds the verified
file in the cache. A folder or repo without a zoo manifest (a model saved with
`save_pretrained`) is not a published run and loads as transformers loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from checkpoints_manifest import MANIFEST_NAME, Manifest, ManifestError
from zoo.hub import verified
from zoo.hub.backends import HubBackend, Repo
from zoo.hub.errors import IntegrityError, UnknownModelError
from zoo.hub.load import snapshot, verified_path

WEIGHTS = "model.safetensors"


def verified_revision(name_or_path: str | os.PathLike, subfolder: str, revision: str | None) -> str | None:
    """Check `{subfolder}/model.safetensors` of a run repo (or a local folder laid out like one) against its
    manifest; the revision to load it at: the manifest's commit on the Hub, `revision` otherwise.
    IntegrityError if the bytes differ from the manifest's."""
    path = f"{subfolder.strip('/')}/{WEIGHTS}".lstrip("/")
    folder = Path(name_or_path)
    if folder.is_dir():
        _check_local(folder, path)
        return revision
    backend = HubBackend()
    try:
        snap = snapshot(backend, Repo(str(name_or_path), "model"), revision)
    except UnknownModelError:
        return revision  # no manifest: not a zoo run repo
    if path in snap.manifest.files:
        verified_path(backend, snap, path)
    return snap.revision


def _check_local(folder: Path, path: str) -> None:
    try:
        manifest = Manifest.from_json((folder / MANIFEST_NAME).read_text(), source=str(folder / MANIFEST_NAME))
    except FileNotFoundError:
        return
    except (ManifestError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{folder / MANIFEST_NAME} is damaged ({e}); download the run again",
                             repo_id=str(folder), path=MANIFEST_NAME) from None
    entry = manifest.files.get(path)
    if entry is None:
        return
    local = folder / path
    size = local.stat().st_size if local.is_file() else -1
    sha256 = verified.sha256_of(local) if size == entry.size else ""
    if (size, sha256) != (entry.size, entry.sha256):
        found = f"{size} bytes" if size != entry.size else f"sha256 {sha256}"
        raise IntegrityError(f"{folder / path} does not match {MANIFEST_NAME} (expected {entry.size} bytes, sha256 "
                             f"{entry.sha256}; got {found}); nothing was loaded. Download or publish the run again",
                             repo_id=str(folder), path=path)
