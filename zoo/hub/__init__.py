"""Publish runs to the Hugging Face Hub (or a directory root) and load any model by name, seed and step.

    zoo.publish("out/tiny", org="me")                      # every run + the zoo's data, few commits
    zoo.list_models(org="me")                              # families, sizes, seeds, steps
    m = zoo.load("solu-1l", seed=0, step=12, org="me")     # weights verified byte for byte
    logits, cache = m.model.run_with_cache(tokens)

`root=None` means the Hub at HF_ENDPOINT (downloads go to the standard HF cache and
honour HF_HOME and HF_HUB_OFFLINE); a path or `file://` URL means a directory root
with the same layout (a shared filesystem: files are read in place, and verified).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from zoo.hub.backends import Backend, Repo, backend_for
from zoo.hub.errors import (
    HubError,
    HubUnavailableError,
    IntegrityError,
    NotCachedError,
    PublishError,
    UnknownModelError,
    UnsafeArtifactError,
)
from zoo.hub.load import (
    Loaded,
    Snapshot,
    RunInfo,
    RunListing,
    data_repo,
    fetch_all,
    find_run,
    list_runs,
    load_model,
    run_files,
    run_name,
    snapshot,
)
from zoo.hub.publish import Published, publish_path

Root = str | os.PathLike | None


def publish(path: str | os.PathLike, *, org: str, root: Root = None, progress: bool = True) -> list[Published]:
    """Publish a run directory, or every finished run of a zoo directory, with the zoo's data.

    One repo per run (`{org}/{zoo}-{model}-seed{k}`), one dataset repo per zoo
    (`{org}/{zoo}-data`) and the org's registry. At most two commits per repo; run it
    again to complete an interrupted publish (only missing files are uploaded, and no
    commit is made when nothing is missing). Raises PublishError before uploading
    anything if a run does not match its manifest. `progress` shows one bar over the repos.
    """
    return publish_path(Path(path), org, backend_for(root), progress=progress)


def list_models(*, org: str, root: Root = None) -> RunListing:
    """Every run published under `org`: zoo, model, architecture, size, seeds and checkpoint steps.

    A list of RunInfo; its `unreadable` names each run that could not be read (damaged, or offline and
    not cached) with why, so one bad run does not hide the others.
    """
    return list_runs(backend_for(root), org)


def load(model: str, *, org: str, seed: int | None = None, init_seed: int | None = None,
         data_seed: int | None = None, step: int | str | None = None, tokens: int | None = None,
         zoo: str | None = None, root: Root = None, revision: str | None = None) -> Loaded:
    """Model `model` (e.g. "solu-2l") of one published run at one checkpoint, every byte verified.

    `step` is a checkpoint step or "final" (the default); `tokens=` picks the checkpoint
    nearest to that many tokens seen. `revision` pins a commit sha or tag (e.g. "step24").
    Unknown model, seed or step → UnknownModelError listing what exists; a file whose
    bytes differ from the manifest → IntegrityError naming it (the bad copy is not kept);
    a malformed or hostile file (unsafe path, not safetensors, wrong tensors, JSON nested or sized
    beyond reason, a config whose model exceeds this machine's memory) → UnsafeArtifactError, before
    allocating; a server that keeps failing → HubUnavailableError; offline mode (HF_HUB_OFFLINE)
    and a file not in the cache → NotCachedError, at once.
    """
    backend = backend_for(root)
    snap = run_snapshot(backend, org, model, zoo, seed, init_seed, data_seed, revision)
    return load_model(backend, snap, step, tokens)


def download(model: str, *, org: str, seed: int | None = None, init_seed: int | None = None,
             data_seed: int | None = None, steps: list[int] | None = None, zoo: str | None = None,
             root: Root = None, revision: str | None = None, names: Sequence[str] | None = None) -> Path:
    """Fetch a run's config and checkpoints (all, or `steps`) into the HF cache, verified; its folder.

    `names` keeps only the checkpoint files so named (e.g. ["eval.json"]: the held-out loss of
    every checkpoint, without the weights). On a directory root nothing is copied: the files
    are verified where they are.
    """
    backend = backend_for(root)
    snap = run_snapshot(backend, org, model, zoo, seed, init_seed, data_seed, revision)
    return fetch_all(backend, snap, run_files(snap, steps, names))


def download_data(zoo: str, *, org: str, root: Root = None, revision: str | None = None) -> Path:
    """Fetch a zoo's token store, tokenizer and step indexes, verified; the folder holding data/ and index/."""
    backend = backend_for(root)
    snap = snapshot(backend, data_repo(org, zoo), revision)
    return fetch_all(backend, snap, sorted(snap.manifest.files))


def run_snapshot(backend: Backend, org: str, model: str, zoo: str | None, seed: int | None, init_seed: int | None,
              data_seed: int | None, revision: str | None) -> Snapshot:
    """The run's manifest; straight from its repo name when zoo and seeds say it, else via the registry."""
    for name, value in {"model": model, "zoo": zoo, "org": org, "revision": revision}.items():
        if value is not None and not isinstance(value, str):
            raise HubError(f"{name} must be a string, got {value!r}")
    for name, value in {"seed": seed, "init_seed": init_seed, "data_seed": data_seed}.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise HubError(f"{name} must be an int >= 0, got {value!r}")
    init, data = (seed, seed) if seed is not None else (init_seed, data_seed)
    if zoo is not None and init is not None and data is not None:
        try:
            return snapshot(backend, Repo(f"{org}/{run_name(zoo, model, init, data)}", "model"), revision)
        except UnknownModelError as missing:
            # Not published: let the registry say what is (it raises); if it finds the run, the first error stands.
            find_run(backend, org, model, zoo=zoo, seed=seed, init_seed=init_seed, data_seed=data_seed)
            raise missing
    repo = find_run(backend, org, model, zoo=zoo, seed=seed, init_seed=init_seed, data_seed=data_seed)
    return snapshot(backend, repo, revision)


__all__ = ["HubError", "HubUnavailableError", "IntegrityError", "Loaded", "NotCachedError", "PublishError",
           "Published", "RunInfo", "RunListing", "UnknownModelError", "UnsafeArtifactError", "download",
           "download_data", "list_models", "load", "publish"]
