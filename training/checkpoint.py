"""Full-state checkpoints: weights, AdamW moments and step counts, and the loop's position.

A checkpoint is a directory `checkpoints/step{N:08d}/` with
`model.safetensors`, `optimizer.safetensors`, `state.json` and `loss.jsonl`
(one line per update since the previous checkpoint: step, loss, lr, grad_norm,
tokens), and `eval.json` (the held-out loss) in runs whose data holds documents
out. It is written into a hidden `.partial` directory and renamed into
place whole, and becomes valid only once the run's manifest lists it (see
`run_dir.py`). Keeping each stretch of the loss log inside its checkpoint makes
every listed file immutable: a crash can never leave a log that runs ahead of
the manifest, and re-publishing never re-uploads a grown file.

Capture and write are separate so that training can go on while a snapshot is
written: `capture` copies the state (fast), `write` does the I/O.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from checkpoints_manifest import atomic_write, atomic_write_bytes, atomic_write_json, fsync_path
from training.errors import CheckpointError, describe_os_error

CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "state.json", "loss.jsonl")
EVAL_NAME = "eval.json"  # beside them when the run evaluates a held-out split (training/evaluate.py)
STATE_FORMAT = 1
_MOMENTS = ("exp_avg", "exp_avg_sq", "step")


def checkpoint_dir_name(step: int) -> str:
    return f"step{step:08d}"


def checkpoint_relpaths(step: int) -> list[str]:
    """The files of checkpoint `step`, relative to the run directory (manifest keys)."""
    return [f"checkpoints/{checkpoint_dir_name(step)}/{name}" for name in CHECKPOINT_FILES]


@dataclass(frozen=True)
class LoopState:
    """Where the loop stands after `step` updates: everything besides tensors needed to go on."""

    step: int
    tokens_seen: int
    lr: float  # the lr of update `step` (0.0 at step 0)

    def to_dict(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "step": self.step, "tokens_seen": self.tokens_seen, "lr": self.lr,
                # Data order is a pure function of (data_seed, step) and no random numbers are drawn
                # after initialization, so no generator or data-loader state exists to be saved.
                "random_state": "none: data order is stateless and training draws no random numbers"}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str) -> "LoopState":
        if d.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{source}: state format {d.get('format')!r} is not {STATE_FORMAT}; "
                                  f"this checkpoint was written by another version of zoo")
        return cls(step=int(d["step"]), tokens_seen=int(d["tokens_seen"]), lr=float(d["lr"]))


@dataclass(frozen=True)
class Snapshot:
    """A copy of the full training state, safe to write while training continues."""

    loop: LoopState
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    loss_records: tuple[dict[str, Any], ...]  # the updates since the previous checkpoint
    evaluation: dict[str, Any] | None = None  # the held-out loss of these weights, if the run has a split


def init_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Create AdamW's moments eagerly (as its first step would), so step 0 saves like any other."""
    for param in model.parameters():
        optimizer.state[param] = {
            "step": torch.tensor(0.0),
            "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
        }


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loop: LoopState,
            loss_records: list[dict[str, Any]], evaluation: dict[str, Any] | None = None) -> Snapshot:
    """Copy weights and optimizer moments to CPU: the snapshot no longer changes with training."""
    weights = {name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.named_parameters()}
    moments = {}
    for name, param in model.named_parameters():
        state = optimizer.state[param]
        for key in _MOMENTS:
            moments[f"{name}.{key}"] = state[key].detach().to("cpu", copy=True).contiguous()
    return Snapshot(loop, weights, moments, tuple(loss_records), evaluation)


def write(run_dir: Path, snapshot: Snapshot) -> list[str]:
    """Write `snapshot` as checkpoint directory; returns its files relative to `run_dir`.

    Raises `CheckpointError` naming the step and the cause (e.g. a full disk); the
    half-written `.partial` directory is removed, earlier checkpoints are untouched.
    """
    parent = run_dir / "checkpoints"
    parent.mkdir(exist_ok=True)
    name = checkpoint_dir_name(snapshot.loop.step)
    partial = parent / f".{name}.partial"
    final = parent / name
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        atomic_write(partial / "model.safetensors", lambda tmp: _save(snapshot.weights, tmp))
        atomic_write(partial / "optimizer.safetensors", lambda tmp: _save(snapshot.optimizer, tmp))
        atomic_write_json(partial / "state.json", snapshot.loop.to_dict())
        atomic_write_bytes(partial / "loss.jsonl", loss_lines(snapshot.loss_records))
        if snapshot.evaluation is not None:
            atomic_write_json(partial / EVAL_NAME, snapshot.evaluation)
        if final.exists():  # left by a crash after the rename but before the manifest listed it
            shutil.rmtree(final)
        os.replace(partial, final)
        fsync_path(parent)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint step {snapshot.loop.step} in {parent}: {describe_os_error(e)}. "
            f"Earlier checkpoints are intact; free space (or fix the directory) and rerun with --resume."
        ) from e
    extra = [f"checkpoints/{name}/{EVAL_NAME}"] if snapshot.evaluation is not None else []
    return checkpoint_relpaths(snapshot.loop.step) + extra


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors reports a failed write (e.g. a full disk) as SafetensorError: make it the OSError it is."""
    try:
        save_file(tensors, str(path))
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), str(e), str(path)) from e


def loss_lines(records: tuple[dict[str, Any], ...]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()


def read_loss_log(run_dir: Path, steps: list[int]) -> list[dict[str, Any]]:
    """The per-update loss records of a run, from the loss stretches of checkpoints `steps`."""
    records = []
    for step in steps:
        path = run_dir / "checkpoints" / checkpoint_dir_name(step) / "loss.jsonl"
        records.extend(json.loads(line) for line in path.read_text().splitlines())
    return records


def read_evaluations(run_dir: Path, steps: list[int]) -> list[dict[str, Any]]:
    """The eval.json records of checkpoints `steps` that have one (runs without a held-out split have none)."""
    paths = [run_dir / "checkpoints" / checkpoint_dir_name(step) / EVAL_NAME for step in steps]
    return [json.loads(path.read_text()) for path in paths if path.is_file()]


def read(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> LoopState:
    """Load checkpoint `step` into `model` and `optimizer` (whose moments must exist) in place."""
    folder = run_dir / "checkpoints" / checkpoint_dir_name(step)
    source = str(folder)
    try:
        weights = load_file(folder / "model.safetensors")
        moments = load_file(folder / "optimizer.safetensors")
        loop = LoopState.from_dict(json.loads((folder / "state.json").read_text()), source=source)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {source} cannot be read: {e}") from e
    params = dict(model.named_parameters())
    expected = set(params)
    if set(weights) != expected:
        raise CheckpointError(f"{source}/model.safetensors holds tensors {sorted(set(weights) ^ expected)} "
                              f"that do not match the model")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name])
            state = optimizer.state[param]
            for key in _MOMENTS:
                state[key].copy_(moments[f"{name}.{key}"])
    return loop
