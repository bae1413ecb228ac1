"""Replay any published run from any checkpoint, bitwise, from downloaded artifacts only; or intervene.

    r = zoo.replay.replay("solu-1l", seed=0, from_step=8, to_step=16, org="me")
    r.bitwise_equal        # True: weights, optimizer state and every loss record match the published ones
    print(r.verdict())

The full state at `from_step` comes from the run's published checkpoint; the batches of
updates from_step+1 … to_step from the zoo's published step index and token store
(only the chunks holding them are fetched); the updates go through the trainer's own
loop (`training.loop.run_steps`). Callbacks see every update and may intervene; a replay
with an intervention is counterfactual and is never reported as a match or mismatch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from safetensors.torch import save as safetensors_bytes
import torch
from tqdm import tqdm

from checkpoints_manifest import (
    EnvironmentRecord,
    Manifest,
    ManifestError,
    canonical_json,
    environment_record,
    parse_json,
    sha256_bytes,
)
from training import checkpoint
from training.determinism import set_determinism
from training.errors import CheckpointError, ResourceError, TrainingError
from training.footprint import check_training
from training.loop import build_model, build_optimizer, loss_record, model_config, numerics_of, run_steps
from training.model import Transformer, lm_loss
from training.numerics import recorded_numerics
from training.spec import RunSpec, ZooSpec, spec_from_dict
from training.tensors_file import read_tensors
from zoo.hub.backends import Backend, backend_for
from zoo.hub.errors import IntegrityError, UnsafeArtifactError
from zoo.hub.load import Snapshot, data_repo, fetch_all, pick_step, snapshot, verified_bytes
from zoo.hub.weights import model_config as published_model
from zoo.replay.data import PublishedData
from zoo.replay.errors import ReplayError
from zoo.replay.step import Callback, ReplayStep
from zoo.hub import Root, run_snapshot

_BLOCK_STEPS = 64  # batches read from the store this many steps at a time: few reads, bounded memory


@dataclass
class ReplayResult:
    """What a replay did and how it compares with the published run."""

    repo_id: str
    from_step: int
    to_step: int
    updates: int  # optimizer updates this replay ran: to_step - from_step, never one before from_step
    counterfactual: bool  # a callback intervened: the run is not the original and is not judged as one
    interventions: list[str]
    compared_checkpoint: int | None  # the published checkpoint the end state was compared with, if any
    bitwise_equal: bool | None  # None for a counterfactual replay
    weight_max_abs_diff: dict[str, float]  # per tensor, vs the published checkpoint (all 0.0 when equal)
    optimizer_max_abs_diff: dict[str, float]
    first_loss_difference: int | None  # first step whose loss record (loss, grad norm, lr) differs
    loss_records: list[dict[str, Any]]  # the replayed updates, in the loss log's format
    environment_differences: list[str]  # why bitwise equality is not to be expected here ([]: same platform)
    unrecorded_platform: list[str]  # platform facts compared today that the run's manifest predates
    fetched_data: list[str]  # the data repo's chunk files this replay fetched
    model: Transformer  # the state after `to_step`

    def verdict(self) -> str:
        """One line: the outcome, stated plainly."""
        span = f"{self.repo_id} steps {self.from_step}→{self.to_step}"
        if self.counterfactual:
            effect = _largest(self.weight_max_abs_diff)
            against = (f"; differs from the original at step {self.compared_checkpoint} by max |Δ| {effect}"
                       if self.compared_checkpoint is not None else "")
            return f"COUNTERFACTUAL {span}: {len(self.interventions)} intervention(s), not compared as a " \
                   f"reproduction{against}"
        against = (f"checkpoint {self.compared_checkpoint} (all 4 files) and " if self.compared_checkpoint is not None
                   else "")
        if self.bitwise_equal:
            return f"BITWISE EQUAL {span}: {against}all {self.updates} loss records match byte for byte"
        where = (f"loss first differs at step {self.first_loss_difference}"
                 if self.first_loss_difference is not None else "every loss record matches")
        if self.environment_differences:
            env = "; the platform differs from the run's: " + "; ".join(self.environment_differences)
        elif self.unrecorded_platform:
            env = (f"; the run's manifest does not record {', '.join(self.unrecorded_platform)} (it predates those "
                   f"records), so its platform cannot be compared fully")
        else:
            env = "; same platform as the run: this is a real divergence"
        return (f"DIVERGED {span}: {where}; max |Δ| weights {_largest(self.weight_max_abs_diff)}, "
                f"optimizer {_largest(self.optimizer_max_abs_diff)}{env}")


def replay(model: str, *, from_step: int, to_step: int, org: str, seed: int | None = None,
           init_seed: int | None = None, data_seed: int | None = None, zoo: str | None = None,
           root: Root = None, revision: str | None = None, callbacks: Sequence[Callback] = (),
           device: str = "cpu", progress: bool = False) -> ReplayResult:
    """Load the published full state at `from_step`, train to `to_step`, and compare with the published run.

    `from_step` must be a published checkpoint; `to_step` any later step up to the last
    checkpoint. The end state is compared byte for byte with the checkpoint at `to_step`
    when there is one, and every update's loss record with the published loss log.
    Damaged published files raise IntegrityError naming the checkpoint, step index or
    token store file; a hostile one (JSON or a safetensors header beyond reason, a model
    larger than this machine's memory) UnsafeArtifactError, before anything is allocated;
    an invalid request or intervention raises ReplayError.
    """
    backend = backend_for(root)
    snap = run_snapshot(backend, org, model, zoo, seed, init_seed, data_seed, revision)
    where = f"{snap.repo.id}/config.json"
    try:
        config = parse_json(_checked(lambda: verified_bytes(backend, snap, "config.json"), "run config"),
                            source=where)
    except ManifestError as e:
        raise UnsafeArtifactError(f"{e}; republish the run") from None
    d_vocab = published_model(config, snap.repo.id, device).d_vocab  # a malformed model is refused here
    spec, run = _spec_of(config, where)
    try:
        check_training(model_config(spec, run, d_vocab), device=device, what=where,
                       micro_batch_size=spec.training.micro_batch_size)
    except ResourceError as e:
        raise UnsafeArtifactError(f"{e}: the config is corrupt or hostile, or the run is too large for this "
                                  f"machine") from None
    steps = snap.manifest.checkpoints
    pick_step(snap, config, from_step, None)  # a published checkpoint, or an error listing the nearest
    if not from_step < to_step <= steps[-1]:
        raise ReplayError(f"to_step must lie in ({from_step}, {steps[-1]}] (the last published checkpoint of "
                          f"{snap.repo.id}); got {to_step}")
    compared = to_step if to_step in steps else None
    log_steps = [s for s in steps if from_step < s <= min(t for t in steps if t >= to_step)]
    _fetch_checkpoints(backend, snap, from_step, compared, log_steps)
    set_determinism(device, spec.training.cpu_threads, spec.training.cpu_level)
    net = build_model(spec, run, d_vocab, device)
    if net.cfg.to_dict() != config["model"]:
        raise ReplayError(f"{snap.repo.id}: config.json's model does not match the model its run spec builds; "
                          f"it was published by another version of zoo")
    optimizer = build_optimizer(net, spec, device)
    try:
        checkpoint.read(snap.folder, from_step, net, optimizer)
    except CheckpointError as e:  # its bytes are the published ones: the publisher's file is malformed
        raise UnsafeArtifactError(f"{snap.repo.id}: the published checkpoint {from_step} is malformed: {e}; "
                                  f"republish the run") from None

    data = PublishedData(backend, snapshot(backend, data_repo(org, run.zoo), None), data_seed=run.data_seed,
                         batch_size=spec.training.batch_size, fingerprint=snap.manifest.dataset_fingerprint)
    published = {r["step"]: r for r in checkpoint.read_loss_log(snap.folder, log_steps)}
    loss_log = numerics_of(spec).loss_log
    interventions: list[str] = []
    batches = _Batches(data, from_step, to_step, device)
    views: dict[int, ReplayStep] = {}

    def batch_of(step: int) -> torch.Tensor:
        ids, tokens = batches.get(step)
        view = views[step] = ReplayStep(step, ids, tokens, net, data, interventions)
        for callback in callbacks:
            callback.before_update(view)
        return view.tokens

    records, first_diff = [], None
    bar = tqdm(total=to_step - from_step, desc=f"replay {run.name}", unit="step", disable=not progress, leave=False)
    for loop, stats in run_steps(spec, run, None, net, optimizer, start=from_step, stop=to_step, device=device,
                                 batches=batch_of):
        view = views.pop(loop.step)
        view._close_batch(stats.loss, stats.grad_norm)
        for callback in callbacks:
            callback.after_update(view)
        records.append(loss_record(loop, stats))
        if first_diff is None and not _same_record(records[-1], published.get(loop.step), loss_log):
            first_diff = loop.step
        bar.update(1)
    bar.close()

    final = checkpoint.capture(net, optimizer, loop, [r for r in records if r["step"] > _previous(steps, to_step)],
                               loss_log=loss_log)
    weights_diff, moments_diff, files_equal = ({}, {}, True) if compared is None else _compare(snap, final)
    differences, unrecorded = _platform_differences(snap.manifest, environment_record(device), from_step, to_step)
    counterfactual = bool(interventions)
    return ReplayResult(
        repo_id=snap.repo.id, from_step=from_step, to_step=to_step, updates=len(records),
        counterfactual=counterfactual, interventions=interventions, compared_checkpoint=compared,
        bitwise_equal=None if counterfactual else (files_equal and first_diff is None),
        weight_max_abs_diff=weights_diff, optimizer_max_abs_diff=moments_diff,
        first_loss_difference=None if counterfactual else first_diff, loss_records=records,
        environment_differences=differences, unrecorded_platform=unrecorded, fetched_data=data.fetched, model=net)


class Explain(Callback):
    """Record one step's batch as text, with sample and document ids and each sample's loss before the update.

    Reading the model is not an intervention: a replay that explains a step stays bitwise equal.
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self.text: str | None = None

    def before_update(self, step: ReplayStep) -> None:
        if step.step != self.step:
            return
        with torch.no_grad():
            losses = lm_loss(step.model(step.tokens[:, :-1]), step.tokens[:, 1:], per_sample=True).tolist()
        lines = [f"step {step.step}: {len(step.sample_ids)} samples of {step.tokens.shape[1]} tokens; "
                 f"loss per sample on the state before this update (mean {np.mean(losses):.4f})"]
        for row, (sid, spans, text, loss) in enumerate(zip(step.sample_ids.tolist(), step.documents(),
                                                           step.texts(), losses)):
            docs = " ".join(f"doc {s.doc}[{s.start}:{s.end}]" for s in spans)
            lines.append(f"  row {row:>4}  sample {sid:>8}  loss {loss:.4f}  {docs}")
            lines.append("        " + repr(text))
        self.text = "\n".join(lines)


class _Batches:
    """The published batches of the replayed steps, read a block of steps at a time."""

    def __init__(self, data: PublishedData, start: int, stop: int, device: str) -> None:
        self._data, self._stop, self._device = data, stop, device
        self._ids = data.batch_ids(list(range(start + 1, stop + 1)))
        self._block: dict[int, torch.Tensor] = {}

    def get(self, step: int) -> tuple[np.ndarray, torch.Tensor]:
        if step not in self._block:
            block = list(range(step, min(step + _BLOCK_STEPS, self._stop + 1)))
            tokens = self._data.samples(np.concatenate([self._ids[s] for s in block]))
            rows = torch.from_numpy(np.ascontiguousarray(tokens)).to(self._device).split(len(self._ids[step]))
            self._block = dict(zip(block, rows))
        return self._ids[step], self._block.pop(step)


def _spec_of(config: Any, where: str) -> tuple[ZooSpec, RunSpec]:
    """The zoo spec of just this run, rebuilt from its published config.json."""
    try:
        run, model = config["run"], config["model"]
        size = {k: model[k] for k in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp")}
        spec = spec_from_dict({
            "name": run["zoo"], "data": config["data"], "sizes": {"run": size},
            "families": {run["architecture"]: ["run"]}, "seed_pairs": [[run["init_seed"], run["data_seed"]]],
            **{key: config[key] for key in ("training", "optimizer", "checkpoints")},
        }, source="config.json")
        spec = dataclasses.replace(spec, numerics=recorded_numerics(config))  # absent: the path of its day
    except (KeyError, TypeError, TrainingError) as e:
        raise UnsafeArtifactError(f"{where} is not a zoo run config ({type(e).__name__}: {e}); republish the "
                                  f"run") from None
    (only,) = spec.runs()
    return spec, RunSpec(run["zoo"], run["model"], run["architecture"], only.size, run["init_seed"], run["data_seed"])


def _platform_differences(manifest: Manifest, here: EnvironmentRecord, start: int, stop: int,
                          ) -> tuple[list[str], list[str]]:
    """How this platform differs from the one each stretch of updates start+1 … stop was trained on
    (a run resumed elsewhere by request has several), and what the run's records predate."""
    stretches: list[tuple[int, int, EnvironmentRecord]] = []
    for step in range(start + 1, stop + 1):
        _, environment = manifest.platform_of(step)
        if stretches and stretches[-1][2] is environment:
            stretches[-1] = (stretches[-1][0], step, environment)
        else:
            stretches.append((step, step, environment))
    differences, unrecorded = [], []
    for first, last, environment in stretches:
        prefix = f"steps {first}-{last}: " if environment is not manifest.environment else ""
        differences += [prefix + d for d in here.bitwise_comparable(environment)]
        unrecorded += [name for name in here.unrecorded_in(environment) if name not in unrecorded]
    return differences, unrecorded


def _same_record(ours: dict[str, Any], theirs: dict[str, Any] | None, loss_log: str) -> bool:
    """Loss records compared by their bytes in the run's loss.jsonl format: a NaN equals itself."""
    return theirs is not None and checkpoint.loss_lines([ours], loss_log) == checkpoint.loss_lines([theirs], loss_log)


def _fetch_checkpoints(backend: Backend, snap: Snapshot, start: int, compared: int | None,
                       log_steps: list[int]) -> None:
    """Checkpoint `start` whole, checkpoint `compared` (if any) and the loss log stretches covering the replay."""
    def files(step: int, names: Sequence[str]) -> list[str]:
        return [f"checkpoints/{checkpoint.checkpoint_dir_name(step)}/{name}" for name in names]

    paths = files(start, checkpoint.CHECKPOINT_FILES)
    if compared is not None:
        paths += files(compared, checkpoint.CHECKPOINT_FILES)
    for step in log_steps:
        paths += files(step, ["loss.jsonl"])
    _checked(lambda: fetch_all(backend, snap, sorted(set(paths))), "checkpoint")


def _checked(fetch: Any, what: str) -> Any:
    """Run a fetch; a damaged file's error says first which published part it belongs to."""
    try:
        return fetch()
    except IntegrityError as e:
        kind = f"{what} {e.path.split('/')[1]}" if e.path.startswith("checkpoints/") else what
        raise IntegrityError(f"the published {kind} is damaged: {e}", repo_id=e.repo_id, path=e.path) from None


def _compare(snap: Snapshot, final: checkpoint.Snapshot) -> tuple[dict[str, float], dict[str, float], bool]:
    """Max |Δ| per tensor against the published checkpoint, and whether all four files are byte-identical."""
    folder = snap.folder / "checkpoints" / checkpoint.checkpoint_dir_name(final.loop.step)
    try:
        published_weights = read_tensors(folder / "model.safetensors", final.weights,
                                         f"{snap.repo.id}/{folder.name}/model.safetensors")
        published_moments = read_tensors(folder / "optimizer.safetensors", final.optimizer,
                                         f"{snap.repo.id}/{folder.name}/optimizer.safetensors")
    except CheckpointError as e:
        raise UnsafeArtifactError(f"the published checkpoint {final.loop.step} is malformed: {e}; republish the "
                                  f"run") from None
    replayed = {
        "model.safetensors": safetensors_bytes(final.weights),
        "optimizer.safetensors": safetensors_bytes(final.optimizer),
        "state.json": canonical_json(final.loop.to_dict()).encode(),
        "loss.jsonl": checkpoint.loss_lines(final.loss_records, final.loss_log),
    }
    relpath = f"checkpoints/{checkpoint.checkpoint_dir_name(final.loop.step)}/"
    files_equal = all(sha256_bytes(data) == snap.manifest.files[relpath + name].sha256
                      for name, data in replayed.items())
    return _max_abs_diff(final.weights, published_weights), _max_abs_diff(final.optimizer, published_moments), \
        files_equal


def _max_abs_diff(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, float]:
    if ours.keys() != theirs.keys():
        raise ReplayError(f"the published checkpoint holds tensors {sorted(ours.keys() ^ theirs.keys())} that the "
                          f"replayed state does not (or the reverse); it was written by another version of zoo")
    return {name: _tensor_max_abs_diff(ours[name], theirs[name]) for name in sorted(ours)}


def _tensor_max_abs_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """0.0 for tensors with the same bytes (NaNs included); else the largest |Δ| of differing elements,
    inf where a NaN or an infinity stands against another value."""
    if ours.dtype == theirs.dtype and torch.equal(_bytes(ours), _bytes(theirs)) or not ours.numel():
        return 0.0
    a, b = ours.double(), theirs.double()
    delta = torch.where((a == b) | (a.isnan() & b.isnan()), 0.0, (a - b).abs())
    return torch.nan_to_num(delta, nan=math.inf).max().item()


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _previous(steps: list[int], step: int) -> int:
    """The checkpoint before `step` (whose loss stretch starts after it)."""
    return max((s for s in steps if s < step), default=0)


def _largest(diffs: dict[str, float]) -> str:
    if not diffs:
        return "n/a"
    name = max(diffs, key=lambda k: diffs[k])
    return f"{diffs[name]:.3g} ({name})"


__all__ = ["Callback", "Explain", "ReplayError", "ReplayResult", "ReplayStep", "replay"]
