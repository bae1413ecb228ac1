"""Publish runs and their zoo's data: one repo per run, one dataset repo per zoo, a registry per org.

Each repo gets at most two commits per publish: first every file that is missing
remotely, then manifest.json (recording the commit each file was published at) with
the files derived from the run's: the card and its figure (the zoo card on the dataset
repo), and in a run repo what transformers reads (zoo.hub.interop). Publishing again
uploads only what is missing and commits nothing when nothing is, so a killed publish is
completed by running it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from tqdm import tqdm

from checkpoints_manifest import (
    MANIFEST_NAME,
    LockHeldError,
    Manifest,
    ManifestError,
    canonical_json,
    file_entry,
    held_lock,
    parse_json,
    read_json,
    read_manifest,
    verify,
)
from data_index import StepIndex
from training.checkpoint import read_evaluations, read_loss_log
from training.errors import StaleStepIndexError
from training.loop import check_step_index
from training.run_dir import LOCK_NAME
from zoo.hub.backends import Backend, Content, Repo
from zoo.hub.card import loss_png, model_card
from zoo.hub.errors import PublishError
from zoo.hub.interop import interop_files
from zoo.hub.zoo_card import FIGURE, CardRun, zoo_card, zoo_loss_png

REGISTRY = "zoo-registry"  # dataset repo per org listing its published runs (the Hub API has no org listing here)
REGISTRY_FILE = "registry.json"
TOKENIZER_PATH = "data/tokenizer.json"  # in a zoo directory and in its dataset repo


@dataclass(frozen=True)
class Published:
    """What one publish did to one repo."""

    repo_id: str
    repo_type: str  # "model" | "dataset"
    uploaded: list[str]  # paths written by this publish ([] when the repo was already complete)
    commits: list[str]  # commits made, oldest first ([] when nothing changed, or on a directory root)


@dataclass(frozen=True)
class _Run:
    path: Path
    manifest: Manifest
    config: dict[str, Any]


def data_repo_id(org: str, zoo: str) -> str:
    """The dataset repo of a zoo: token store, tokenizer and step indexes."""
    return f"{org}/{zoo}-data"


def publish_path(path: Path, org: str, backend: Backend, *, progress: bool = False) -> list[Published]:
    """Publish a run directory (and its zoo's data), or every finished run of a zoo directory; with
    `progress`, one bar over the repos instead of huggingface_hub's bar per file."""
    with ExitStack() as stack:
        for run_dir in _run_dirs(path):
            stack.enter_context(_locked(run_dir))
        stack.enter_context(_hub_bars_off())
        return _publish_runs(path, org, backend, progress)


@contextmanager
def _hub_bars_off() -> Iterator[None]:
    """Silence huggingface_hub's per-file progress bars (hundreds of lines for one publish) meanwhile."""
    was_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            enable_progress_bars()


def _publish_runs(path: Path, org: str, backend: Backend, progress: bool) -> list[Published]:
    runs, zoo_dir = _runs_to_publish(path)
    with tqdm(total=len(runs) + 2, desc="publish", unit="repo", disable=not progress) as bar:
        return _publish_repos(runs, zoo_dir, org, backend, bar)


def _publish_repos(runs: list[_Run], zoo_dir: Path, org: str, backend: Backend, bar: tqdm) -> list[Published]:
    """The data repo, each run's repo, then the registry; `bar` advances by one per repo."""
    zoo = runs[0].config["run"]["zoo"]
    data_files, data_manifest = _data_files(zoo_dir, zoo, runs)
    data_repo = Repo(data_repo_id(org, zoo), "dataset")
    shown = runs + _published_before(backend, org, zoo_dir, runs)
    logs = {run.path: read_loss_log(run.path, run.manifest.checkpoints) for run in shown}
    card_runs = [CardRun(run.manifest.run, run.config, run.manifest.checkpoints,
                         [(r["step"], r["loss"]) for r in logs[run.path]]) for run in shown]
    results = [_publish_repo(backend, data_repo, data_manifest, data_files, tag=None, cards={
        "README.md": zoo_card(zoo, org, card_runs, data_manifest,
                              sorted({r.config["run"]["data_seed"] for r in runs})).encode(),
        FIGURE: zoo_loss_png(zoo, card_runs)})]
    bar.update()
    tokenizer_json = (zoo_dir / TOKENIZER_PATH).read_bytes()
    for run in runs:
        files: dict[str, Content] = {rel: run.path / rel for rel in run.manifest.files}
        evaluations = read_evaluations(run.path, run.manifest.checkpoints)
        cards = {"README.md": model_card(org, run.config, run.manifest, data_repo=data_repo.id,
                                         evaluations=evaluations).encode(),
                 "loss.png": loss_png(logs[run.path], run.manifest.run, evaluations),
                 **interop_files(run.config, run.manifest, tokenizer_json)}
        results.append(_publish_repo(backend, Repo(f"{org}/{run.manifest.run}", "model"), run.manifest, files,
                                     tag=f"step{run.manifest.checkpoints[-1]}", cards=cards))
        bar.update()
    results.append(_register(backend, org, runs))
    bar.update()
    return results


def _published_before(backend: Backend, org: str, zoo_dir: Path, runs: list[_Run]) -> list[_Run]:
    """The zoo directory's other runs that the org's registry lists: the zoo card shows them too, so that
    publishing one run does not shrink the card to that run."""
    raw = backend.read(Repo(f"{org}/{REGISTRY}", "dataset"), REGISTRY_FILE)
    registry = parse_json(raw, source=f"{org}/{REGISTRY}/{REGISTRY_FILE}") if raw is not None else {"runs": {}}
    registered = set(registry["runs"])
    publishing = {run.manifest.run for run in runs}
    others = []
    for run_dir in _run_dirs(zoo_dir):
        try:
            manifest = read_manifest(run_dir)
        except ManifestError:
            continue  # not published from here now; its own publish reports what is wrong
        if manifest.run in registered and manifest.run not in publishing and manifest.checkpoints:
            others.append(_Run(run_dir, manifest, read_json(run_dir / "config.json")))
    return others


def _run_dirs(path: Path) -> list[Path]:
    """The run directories to publish: `path` itself, or every run of the zoo directory `path`."""
    if (path / MANIFEST_NAME).is_file():
        return [path]
    if (path / "runs").is_dir():
        return sorted(d for d in (path / "runs").iterdir() if (d / MANIFEST_NAME).is_file())
    raise PublishError(f"{path} is neither a run directory (with {MANIFEST_NAME}) nor a zoo directory "
                       f"(with runs/); pass e.g. out/tiny or out/tiny/runs/solu-1l-seed0")


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock (the trainer's): a second publisher, or a trainer, is refused meanwhile."""
    try:
        with held_lock(run_dir / LOCK_NAME):
            yield
    except LockHeldError:
        raise PublishError(f"{run_dir} is locked by another process (a publish or a trainer is running on "
                           f"it); nothing was published. Wait for it to finish and publish again") from None


def _runs_to_publish(path: Path) -> tuple[list[_Run], Path]:
    """The runs under `path`, each checked against its manifest before anything is uploaded."""
    run_dirs = _run_dirs(path)
    zoo_dir = path.parent.parent if (path / MANIFEST_NAME).is_file() else path
    if not run_dirs:
        raise PublishError(f"{path}/runs holds no run with a {MANIFEST_NAME}; train the zoo first (zoo train)")
    runs = []
    for run_dir in run_dirs:
        try:
            manifest = read_manifest(run_dir)
        except ManifestError as e:
            raise PublishError(f"cannot publish {run_dir}: {e}") from None
        if not manifest.checkpoints:
            raise PublishError(f"{run_dir} has no complete checkpoint yet; train it first")
        if links := [rel for rel in manifest.files if _through_link(run_dir, rel)]:
            raise PublishError(f"{run_dir}: {links[0]} is (or lies under) a symlink; a run publishes its own "
                               f"files only (a link could publish anything on this machine). Replace it by the "
                               f"file itself")
        if mismatches := verify(run_dir, manifest):
            listed = "; ".join(map(str, mismatches[:5]))
            raise PublishError(f"{run_dir} does not match its manifest ({listed}); nothing was published. "
                               f"Retrain or resume the run (zoo train --resume) to repair it")
        try:
            config = read_json(run_dir / "config.json")
        except ManifestError as e:
            raise PublishError(f"cannot publish {run_dir}: {e}") from None
        runs.append(_Run(run_dir, manifest, config))
    return runs, zoo_dir


def _through_link(base: Path, rel: str) -> bool:
    parts = Path(rel).parts
    return any((base.joinpath(*parts[:i])).is_symlink() for i in range(1, len(parts) + 1))


def _data_files(zoo_dir: Path, zoo: str, runs: list[_Run]) -> tuple[dict[str, Content], Manifest]:
    """Every file of the zoo's token store and step indexes, and a manifest listing them."""
    store_meta = zoo_dir / "data" / "store.json"
    if not store_meta.is_file():
        raise PublishError(f"{zoo_dir}/data holds no token store (store.json); the runs cannot be published "
                           f"without the data they trained on. Rebuild it with: zoo train SPEC (it prepares data)")
    try:
        fingerprint = read_json(store_meta)["fingerprint"]
    except (ManifestError, KeyError, TypeError) as e:
        raise PublishError(f"{store_meta} is not a token store's record ({e}); rebuild the data with: "
                           f"zoo train SPEC") from None
    for run in runs:
        if run.manifest.dataset_fingerprint != fingerprint:
            raise PublishError(f"run {run.manifest.run} was trained on dataset {run.manifest.dataset_fingerprint}, "
                               f"but {zoo_dir}/data has fingerprint {fingerprint}; publish from the zoo "
                               f"directory the run was trained in")
    rels = []
    for folder in ["data", *(f"index/data{d}" for d in sorted({r.config["run"]["data_seed"] for r in runs}))]:
        if not (zoo_dir / folder).is_dir():
            raise PublishError(f"{zoo_dir}/{folder} is missing; rebuild it with: zoo train SPEC --resume")
        if folder.startswith("index/"):
            try:
                check_step_index(zoo_dir, StepIndex.open(zoo_dir / folder), fingerprint)
            except StaleStepIndexError as e:
                raise PublishError(f"nothing was published: {e}") from None
        rels += [p.relative_to(zoo_dir).as_posix() for p in sorted((zoo_dir / folder).rglob("*"))
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(zoo_dir).parts)]
    if links := [rel for rel in rels if _through_link(zoo_dir, rel)]:
        raise PublishError(f"{zoo_dir}: {links[0]} is (or lies under) a symlink; the zoo's data publishes its "
                           f"own files only. Replace it by the file itself")
    # Provenance from a run, not from this process, so publishing again from another checkout changes nothing.
    first = runs[0].manifest
    manifest = Manifest(run=f"{zoo}-data", files={rel: file_entry(zoo_dir, rel) for rel in rels}, checkpoints=[],
                        dataset_fingerprint=fingerprint, code_version=first.code_version,
                        environment=first.environment)
    return {rel: zoo_dir / rel for rel in rels}, manifest


def _publish_repo(backend: Backend, repo: Repo, manifest: Manifest, files: dict[str, Content], *,
                  tag: str | None, cards: dict[str, bytes]) -> Published:
    """Upload what is missing in one commit, then the manifest (with commits) and cards in a second."""
    head = backend.head(repo)
    missing = backend.missing(repo, files)
    remote = _remote_manifest(backend, repo)
    commits = []
    data_commit = None
    if missing:
        data_commit = backend.commit(repo, {p: files[p] for p in missing},
                                     f"Publish {len(missing)} file(s) of {manifest.run}", head)
        commits.append(data_commit)
    entries = {}
    for rel, entry in manifest.files.items():
        old = remote.files.get(rel) if remote else None
        if rel in missing:
            commit = data_commit
        elif old is not None and old.sha256 == entry.sha256 and old.commit is not None:
            commit = old.commit
        else:
            commit = head  # already on main with these bytes, published before a manifest recorded it
        entries[rel] = replace(entry, commit=commit)
    final = {MANIFEST_NAME: replace(manifest, files=entries).to_json().encode(), **cards}
    changed = backend.missing(repo, final)
    if changed:
        # Last, on top of the data commit: a manifest never lists a file that is not committed.
        commits.append(backend.commit(repo, {p: final[p] for p in changed}, f"Manifest and card of {manifest.run}",
                                      data_commit or head))
    if tag is not None:
        backend.tag(repo, tag, commits[-1] if commits else head)
    return Published(repo.id, repo.type, missing + changed, [c for c in commits if c is not None])


def _remote_manifest(backend: Backend, repo: Repo) -> Manifest | None:
    raw = backend.read(repo, MANIFEST_NAME)
    if raw is None:
        return None
    try:
        return Manifest.from_json(raw, source=f"{repo.id}/{MANIFEST_NAME}")
    except ManifestError:
        return None  # unreadable: record commits as if none were known, and replace it


def _register(backend: Backend, org: str, runs: list[_Run]) -> Published:
    """Add the runs to the org's registry, which `list_models` reads."""
    repo = Repo(f"{org}/{REGISTRY}", "dataset")
    head = backend.head(repo)
    raw = backend.read(repo, REGISTRY_FILE)
    try:
        registry = parse_json(raw, source=f"{repo.id}/{REGISTRY_FILE}") if raw is not None else {"runs": {}}
        if not isinstance(registry.get("runs"), dict):
            raise ManifestError(f"{repo.id}/{REGISTRY_FILE} has no table of runs")
    except (ManifestError, AttributeError) as e:
        raise PublishError(f"the org's registry is damaged ({e}); the runs were published but not registered. "
                           f"Repair or delete {repo.id}/{REGISTRY_FILE}, then publish again") from None
    for run in runs:
        r = run.config["run"]
        registry["runs"][run.manifest.run] = {key: r[key] for key in
                                              ("zoo", "model", "architecture", "init_seed", "data_seed")}
    content = {REGISTRY_FILE: canonical_json(registry).encode()}
    changed = backend.missing(repo, content)
    commit = backend.commit(repo, content, f"Register {len(runs)} run(s)", head) if changed else None
    return Published(repo.id, repo.type, changed, [commit] if commit else [])
