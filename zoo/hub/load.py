"""Find published runs, fetch their files with every byte checked, and build models from them.

A run's manifest.json is fetched first (at `revision`, default main); every other file
is then fetched at the commit that manifest came from, so one load sees one snapshot
(and a warm cache needs no request beyond the manifest's). Each file is checked
against its manifest entry; a bad copy is evicted from the cache before the error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch
from tokenizers import Tokenizer

from checkpoints_manifest import (
    MANIFEST_NAME,
    MAX_JSON_BYTES,
    Manifest,
    ManifestError,
    UnsafeJSONError,
    parse_json,
    read_json,
    sha256_bytes,
)
from data_index import load_tokenizer
from training.checkpoint import checkpoint_dir_name
from training.model import ModelInputError, Transformer
from training.schedule import describe_steps
from zoo.hub import verified
from zoo.hub.backends import Backend, Repo
from zoo.hub.errors import (
    HubError,
    HubUnavailableError,
    IntegrityError,
    NotCachedError,
    UnknownModelError,
    UnsafeArtifactError,
    mismatch_error,
)
from zoo.hub.publish import REGISTRY, REGISTRY_FILE, TOKENIZER_PATH, data_repo_id
from zoo.hub.weights import load_weights, model_config

T = TypeVar("T")


@dataclass(frozen=True)
class RunInfo:
    """One published run, as `list_models` reports it (from its manifest and config)."""

    repo_id: str
    zoo: str
    model: str  # e.g. "solu-2l"
    architecture: str
    init_seed: int
    data_seed: int
    n_layers: int
    d_model: int
    steps: list[int]  # checkpoint steps, ascending


class RunListing(list[RunInfo]):
    """The runs `list_models` could read, in order, and `unreadable`: each run it could not read (damaged,
    or not in the cache in offline mode), by repo id, with why."""

    def __init__(self, runs: list[RunInfo], unreadable: dict[str, str]) -> None:
        super().__init__(runs)
        self.unreadable = unreadable


@dataclass
class Loaded:
    """A model with weights loaded (ready for `run_with_cache`), its tokenizer, and the records it came from."""

    model: Transformer
    config: dict[str, Any]
    manifest: Manifest  # as published: each file with the commit it was published at
    step: int
    repo_id: str
    commit: str | None  # the Hub commit the files came from; None on a directory root
    _fetch_tokenizer: Callable[[], Tokenizer] = field(repr=False, compare=False)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The zoo's tokenizer, fetched on first use: its dataset repo's tokenizer.json alone, verified."""
        return self._fetch_tokenizer()

    def to_tokens(self, text: str | list[str]) -> torch.Tensor:
        """Token ids [batch, pos] (int64, on the model's device) of a text, or of texts of equal token length.

        Nothing is added (no BOS: training samples run on from the previous document's EOS), so the ids
        are `AutoTokenizer`'s for the run repo; "<|endoftext|>" in a text is the EOS token."""
        texts = [text] if isinstance(text, str) else list(text)
        ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        if len({len(row) for row in ids}) > 1:
            raise ModelInputError(f"the texts encode to different lengths {[len(row) for row in ids]}; pass them "
                                  f"one at a time (zoo models have no padding mask)")
        return torch.tensor(ids, dtype=torch.int64, device=self.model.embed.W_E.device)

    def to_string(self, tokens: torch.Tensor | list[int] | list[list[int]]) -> str | list[str]:
        """The text of token ids: one string for [pos], a list for [batch, pos] (EOS shows as <|endoftext|>)."""
        rows = torch.as_tensor(tokens).tolist()
        if rows and isinstance(rows[0], list):
            return self.tokenizer.decode_batch(rows, skip_special_tokens=False)
        return self.tokenizer.decode(rows, skip_special_tokens=False)


@dataclass(frozen=True)
class Snapshot:
    """A run's manifest and the revision its other files are fetched at."""

    repo: Repo
    manifest: Manifest
    revision: str | None
    folder: Path


def run_name(zoo: str, model: str, init_seed: int, data_seed: int) -> str:
    """`{zoo}-{model}-seed{k}`, or `-init{i}-data{d}` when the seeds differ: the run's repo name."""
    seeds = f"seed{init_seed}" if init_seed == data_seed else f"init{init_seed}-data{data_seed}"
    return f"{zoo}-{model}-{seeds}"


def registry(backend: Backend, org: str) -> dict[str, dict[str, Any]]:
    """Run name → identity (zoo, model, architecture, seeds) of every run published under `org`."""
    try:
        local, _ = backend.fetch(Repo(f"{org}/{REGISTRY}", "dataset"), REGISTRY_FILE, None)
    except UnknownModelError:
        raise UnknownModelError(f"nothing is published under org {org!r} (no {org}/{REGISTRY}); "
                                f"check org= (and HF_ENDPOINT or root=), or publish a zoo first") from None
    try:
        runs = _json(local, f"{org}/{REGISTRY}/{REGISTRY_FILE}")["runs"]
        if isinstance(runs, dict) and all(isinstance(r, dict) for r in runs.values()):
            return runs
    except (KeyError, TypeError):
        pass
    raise UnsafeArtifactError(f"{org}/{REGISTRY}/{REGISTRY_FILE} is not a zoo registry; publish a run again "
                              f"to rewrite it")


def _json(local: Path, where: str) -> Any:
    """A JSON file from outside; refused (unread if it is huge) when it is not a JSON record."""
    try:
        return read_json(local, source=where)
    except UnsafeJSONError as e:
        raise UnsafeArtifactError(f"{e}; republish it") from None


def list_runs(backend: Backend, org: str) -> RunListing:
    """Every run published under `org`, with sizes and checkpoint steps from its verified files.

    A run whose files are damaged, hostile or (offline) not cached is named in `unreadable`
    with why, and the others are listed; a server that keeps failing is an error for all.
    """
    out, unreadable = [], {}
    for name in sorted(registry(backend, org)):
        try:
            snap = snapshot(backend, Repo(f"{org}/{name}", "model"), None)
            config = _config(backend, snap)
        except HubUnavailableError as e:
            if not isinstance(e, NotCachedError):
                raise
            unreadable[f"{org}/{name}"] = str(e)
            continue
        except HubError as e:
            unreadable[f"{org}/{name}"] = str(e)
            continue
        run, model = config["run"], config["model"]
        out.append(RunInfo(snap.repo.id, run["zoo"], run["model"], run["architecture"], run["init_seed"],
                           run["data_seed"], model["n_layers"], model["d_model"], snap.manifest.checkpoints))
    return RunListing(sorted(out, key=lambda r: (r.zoo, r.architecture, r.n_layers, r.model, r.init_seed,
                                                 r.data_seed)), unreadable)


def find_run(backend: Backend, org: str, model: str, *, zoo: str | None, seed: int | None,
             init_seed: int | None, data_seed: int | None) -> Repo:
    """The repo of the one run matching; an error listing what exists when none or several do."""
    if seed is not None:
        if init_seed is not None or data_seed is not None:
            raise HubError("pass either seed= (both seeds) or init_seed=/data_seed=, not both")
        init_seed = data_seed = seed
    runs = registry(backend, org)
    models = sorted({f"{r['zoo']}/{r['model']}" for r in runs.values()})
    candidates = {n: r for n, r in runs.items() if r["model"] == model and zoo in (None, r["zoo"])}
    if not candidates:
        where = f" in zoo {zoo!r}" if zoo else ""
        raise UnknownModelError(f"org {org!r} has no model {model!r}{where}; published (zoo/model): "
                                f"{', '.join(models)}")
    matches = [n for n, r in candidates.items()
               if init_seed in (None, r["init_seed"]) and data_seed in (None, r["data_seed"])]
    seeds = ", ".join(sorted(f"{r['zoo']}: init_seed={r['init_seed']} data_seed={r['data_seed']}"
                             for r in candidates.values()))
    if not matches:
        raise UnknownModelError(f"{model} has no run with init_seed={init_seed}, data_seed={data_seed}; "
                                f"published seeds: {seeds}")
    if len(matches) > 1:
        raise UnknownModelError(f"{model} has {len(matches)} runs matching ({', '.join(sorted(matches))}); "
                                f"pass seed= (or init_seed=/data_seed=) and zoo= to pick one. Seeds: {seeds}")
    return Repo(f"{org}/{matches[0]}", "model")


def snapshot(backend: Backend, repo: Repo, revision: str | None) -> Snapshot:
    """Fetch and parse the repo's manifest.json at `revision`; a manifest that does not parse is evicted."""
    local, commit = backend.fetch(repo, MANIFEST_NAME, revision)
    try:
        if local.stat().st_size > MAX_JSON_BYTES:
            raise ManifestError(f"{local.stat().st_size} bytes, more than a manifest can need ({MAX_JSON_BYTES})")
        manifest = Manifest.from_json(local.read_bytes(), source=f"{repo.id}/{MANIFEST_NAME}")
    except ManifestError as e:
        backend.evict(local)
        fix = ("the copy was removed from the cache, try again (republish the run if it persists)"
               if backend.caches else "republish the run to repair it")
        raise IntegrityError(f"{repo.id}: {MANIFEST_NAME} is damaged ({e}); {fix}", repo_id=repo.id,
                             path=MANIFEST_NAME) from None
    return Snapshot(repo, manifest, commit, local.parent)


def verified_bytes(backend: Backend, snap: Snapshot, path: str) -> bytes:
    """The bytes of a listed file, read once and checked (size, sha256) against the manifest."""
    if path in snap.manifest.files and snap.manifest.files[path].size > MAX_JSON_BYTES:
        raise UnsafeArtifactError(f"{snap.repo.id}: {path} is listed at {snap.manifest.files[path].size} bytes, "
                                  f"more than a JSON record can need ({MAX_JSON_BYTES}); refused undownloaded")

    def read(local: Path) -> tuple[int, str, bytes]:
        data = local.read_bytes()
        return len(data), sha256_bytes(data), data

    return _fetched_and_checked(backend, snap, path, read)


def verified_path(backend: Backend, snap: Snapshot, path: str) -> Path:
    """A local path of a listed file whose bytes were checked against the manifest.

    Hashed once per local copy: the hash is remembered with the file's stat (zoo/verified.py)
    and the file is hashed again whenever its stat changes.
    """
    def measure(local: Path) -> tuple[int, str, Path]:
        size = local.stat().st_size
        # A wrong size needs no hash: it is caught before reading (and a huge file is never read).
        return size, verified.sha256_of(local) if size == _size(snap, path) else "", local

    return _fetched_and_checked(backend, snap, path, measure)


def _fetched_and_checked(backend: Backend, snap: Snapshot, path: str,
                         read: Callable[[Path], tuple[int, str, T]]) -> T:
    """`read(local)` gives (size, sha256, value); the value is returned once they match the manifest."""
    for attempt in range(2):  # a bad copy is evicted (or never kept), so a second download may be good
        try:
            local = _fetch_listed(backend, snap, path)
            size, sha256, value = read(local)
            _check(backend, snap, path, local, size, sha256)
            return value
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _size(snap: Snapshot, path: str) -> int:
    return snap.manifest.files[path].size


def _fetch_listed(backend: Backend, snap: Snapshot, path: str) -> Path:
    if path not in snap.manifest.files:
        raise UnknownModelError(f"{snap.repo.id}: {path} is not in its manifest")
    return backend.fetch(snap.repo, path, snap.revision, snap.manifest.files[path])[0]


def _check(backend: Backend, snap: Snapshot, path: str, local: Path, size: int, sha256: str) -> None:
    entry = snap.manifest.files[path]
    if size == entry.size and sha256 == entry.sha256:
        return
    backend.evict(local)
    raise mismatch_error(snap.repo.id, path, entry, size, sha256, cached=backend.caches)


def pick_step(snap: Snapshot, config: dict[str, Any], step: int | str | None, tokens: int | None) -> int:
    """The checkpoint asked for: a step, "final", or the nearest to `tokens` tokens seen."""
    steps = snap.manifest.checkpoints
    if not steps:
        raise UnknownModelError(f"{snap.repo.id} lists no checkpoint; publish the run again")
    if tokens is not None:
        if step is not None:
            raise HubError(f"pass step= or tokens=, not both (got step={step!r}, tokens={tokens!r})")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise HubError(f"tokens must be an int >= 0 (tokens seen), got {tokens!r}")
        # The loop's own definition of tokens seen after `s` updates (state.json's tokens_seen).
        per_step = config["training"]["batch_size"] * config["data"]["n_ctx"]
        return min(steps, key=lambda s: (abs(s * per_step - tokens), s))
    if step is None or step == "final":
        return steps[-1]
    if not isinstance(step, int) or isinstance(step, bool):
        raise HubError(f"step must be an int or 'final', got {step!r}")
    if step not in steps:
        nearest = sorted(sorted(steps, key=lambda s: (abs(s - step), s))[:2])
        raise UnknownModelError(f"{snap.repo.id} has no checkpoint at step {step}; nearest: "
                                f"{', '.join(map(str, nearest))} (checkpoints: {describe_steps(steps)}; "
                                f"{len(steps)} in all)")
    return step


def load_model(backend: Backend, snap: Snapshot, step: int | str | None, tokens: int | None) -> Loaded:
    """Build the model of checkpoint `step` with verified weights, refusing absurd configs and malformed
    weights before allocating."""
    config = _config(backend, snap)
    chosen = pick_step(snap, config, step, tokens)
    cfg = model_config(config, snap.repo.id)
    path = _checkpoint_file(chosen, "model.safetensors")
    model = load_weights(cfg, verified_path(backend, snap, path), f"{snap.repo.id}/{path}")
    return Loaded(model, config, snap.manifest, chosen, snap.repo.id, snap.revision,
                  lambda: run_tokenizer(backend, snap, config))


def run_tokenizer(backend: Backend, snap: Snapshot, config: dict[str, Any]) -> Tokenizer:
    """The run's tokenizer: tokenizer.json alone from its zoo's dataset repo, checked against that repo's
    manifest, whose dataset fingerprint must be the run's."""
    org = snap.repo.id.split("/")[0]
    data = snapshot(backend, data_repo(org, config["run"]["zoo"]), None)
    if data.manifest.dataset_fingerprint != snap.manifest.dataset_fingerprint:
        raise IntegrityError(f"{data.repo.id} holds dataset {data.manifest.dataset_fingerprint}, but {snap.repo.id} "
                             f"was trained on {snap.manifest.dataset_fingerprint}; its tokenizer may not be the "
                             f"run's. Publish the zoo's data again from the directory the run was trained in",
                             repo_id=data.repo.id, path=MANIFEST_NAME)
    return load_tokenizer(verified_path(backend, data, TOKENIZER_PATH))


def _config(backend: Backend, snap: Snapshot) -> dict[str, Any]:
    """The run's verified config.json, with the keys listing and loading read."""
    where = f"{snap.repo.id}/config.json"
    try:
        config = parse_json(verified_bytes(backend, snap, "config.json"), source=where)
        needed = {"run": ("zoo", "model", "architecture", "init_seed", "data_seed"),
                  "model": ("n_layers", "d_model"), "training": ("batch_size",), "data": ("n_ctx",)}
        if missing := [f"{section}.{key}" for section, keys in needed.items() for key in keys
                       if key not in config[section]]:
            raise KeyError(", ".join(missing))
        return config
    except (ManifestError, KeyError, TypeError) as e:
        raise UnsafeArtifactError(f"{where} is not a zoo run config ({type(e).__name__}: {e}); republish "
                                  f"the run") from None


def _checkpoint_file(step: int, name: str) -> str:
    return f"checkpoints/{checkpoint_dir_name(step)}/{name}"


def fetch_all(backend: Backend, snap: Snapshot, paths: list[str], workers: int = 8) -> Path:
    """Fetch and verify `paths` in parallel; the local folder holding the snapshot."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: verified_path(backend, snap, p), paths))
    return snap.folder


def run_files(snap: Snapshot, steps: list[int] | None, names: Sequence[str] | None = None) -> list[str]:
    """config.json and every file of the checkpoints `steps` (all when None), or only those named `names`."""
    chosen = snap.manifest.checkpoints if steps is None else steps
    for s in chosen:
        if s not in snap.manifest.checkpoints:
            pick_step(snap, {}, s, None)  # raises, listing the nearest steps
    prefixes = tuple(f"checkpoints/{checkpoint_dir_name(s)}/" for s in chosen)
    return ["config.json", *sorted(p for p in snap.manifest.files if p.startswith(prefixes)
                                   and (names is None or p.rsplit("/", 1)[1] in names))]


def data_repo(org: str, zoo: str) -> Repo:
    return Repo(data_repo_id(org, zoo), "dataset")
