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
written: `capture` copies the state off the device without making the device or
the host wait, `write` (on the run directory's writer thread) waits for the copy
and does the I/O.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from checkpoints_manifest import (
    ManifestError,
    UnsafeJSONError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    fsync_path,
    parse_json,
    read_json,
)
from training.errors import CheckpointError, describe_os_error
from training.tensors_file import read_tensors

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
    def from_dict(cls, d: Any, *, source: str) -> "LoopState":
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            found = d.get("format") if isinstance(d, dict) else d
            raise CheckpointError(f"{source}: state format {found!r} is not {STATE_FORMAT}; "
                                  f"this checkpoint was written by another version of zoo")
        return cls(step=int(d["step"]), tokens_seen=int(d["tokens_seen"]), lr=float(d["lr"]))


@dataclass(frozen=True)
class Snapshot:
    """A copy of the full training state, safe to write while training continues.

    Its tensors may still be on their way to host memory: `weights` and `optimizer` wait for them.
    """

    loop: LoopState
    host_weights: dict[str, torch.Tensor]
    host_optimizer: dict[str, torch.Tensor]
    loss_records: tuple[dict[str, Any], ...]  # the updates since the previous checkpoint
    loss_log: str  # how loss.jsonl writes them (the run's numerics.loss_log)
    copied: Any = None  # the device event after which the host copies are complete (None: complete)
    evaluation: dict[str, Any] | None = None  # the held-out loss of these weights, if the run has a split

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        self._wait()
        return self.host_weights

    @property
    def optimizer(self) -> dict[str, torch.Tensor]:
        self._wait()
        return self.host_optimizer

    def _wait(self) -> None:
        if self.copied is not None:
            self.copied.synchronize()


def init_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Create AdamW's moments eagerly (as its first step would), so step 0 saves like any other.

    The step count lives where torch's AdamW would put it: with the parameter for the fused
    kernel, on the CPU otherwise."""
    fused = bool(optimizer.defaults.get("fused"))
    for param in model.parameters():
        optimizer.state[param] = {
            "step": torch.tensor(0.0, device=param.device if fused else "cpu"),
            "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
        }


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loop: LoopState,
            loss_records: list[dict[str, Any]], *, loss_log: str,
            evaluation: dict[str, Any] | None = None) -> Snapshot:
    """Copy weights and optimizer moments off the device: the snapshot no longer changes with training.

    Each tensor is cloned where it lives, in the training stream (fast, and after it the next update may
    change the original); a GPU clone then goes to pinned host memory on a side stream, so neither the
    device nor the host waits for the copy (the snapshot's readers do). On the CPU the clone is the copy.
    """
    params = dict(model.named_parameters())
    tensors = {f"w.{name}": p for name, p in params.items()}
    for name, param in params.items():
        tensors.update({f"o.{name}.{key}": optimizer.state[param][key] for key in _MOMENTS})
    host, copied = _to_host({key: t.detach().clone(memory_format=torch.contiguous_format)
                             for key, t in tensors.items()})
    weights = {key[2:]: t for key, t in host.items() if key.startswith("w.")}
    moments = {key[2:]: t for key, t in host.items() if key.startswith("o.")}
    return Snapshot(loop, weights, moments, tuple(loss_records), loss_log, copied, evaluation)


def _to_host(clones: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
    """The clones in host memory, copied on a side stream; the event that marks the copies done (None on CPU)."""
    on_device = [key for key, t in clones.items() if t.device.type != "cpu"]
    if not on_device:
        return clones, None
    device = clones[on_device[0]].device
    backend = torch.get_device_module(device)
    side = _copy_stream(device)
    side.wait_stream(backend.current_stream(device))  # the clones are made in the training stream
    host = dict(clones)
    with backend.stream(side):
        for key in on_device:
            host[key] = torch.empty(clones[key].shape, dtype=clones[key].dtype, pin_memory=True)
            host[key].copy_(clones[key], non_blocking=True)
            clones[key].record_stream(side)  # its memory is reused only once the copy is done
        copied = backend.Event()
        copied.record(side)
    return host, copied


@functools.cache
def _copy_stream(device: torch.device) -> Any:
    return torch.get_device_module(device).Stream(device)


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
        atomic_write_bytes(partial / "loss.jsonl", loss_lines(snapshot.loss_records, snapshot.loss_log))
        if snapshot.evaluation is not None:
            atomic_write_json(partial / EVAL_NAME, _spelled(snapshot.evaluation))
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


# A non-finite number in a "strict-json" loss log (Python's own spellings, as strings).
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def loss_lines(records: tuple[dict[str, Any], ...] | list[dict[str, Any]], loss_log: str) -> bytes:
    """The bytes of loss.jsonl: one JSON object per update, in the run's `loss_log` format (numerics.py).
    Finite numbers are written alike in both; "strict-json" writes a NaN or infinity as a string."""
    if loss_log == "strict-json":
        records = [_spelled(r) for r in records]
    return "".join(json.dumps(r, sort_keys=True, allow_nan=loss_log == "python-json") + "\n"
                   for r in records).encode()


def _spelled(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with each NaN or infinity spelled as a string (strict JSON); `_numbers` reads it back."""
    return {key: _strict(value) for key, value in record.items()}


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return value


def read_loss_stretch(path: Path) -> list[dict[str, Any]]:
    """The records of one loss.jsonl, in either format: a NaN or infinity comes back as the float it was."""
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json(line, source=f"{path}, line {number}", allow_nan=True)
        if not isinstance(record, dict):
            raise UnsafeJSONError(f"{path}, line {number}: a loss record is a JSON object, got "
                                  f"{type(record).__name__}")
        records.append(_numbers(record))
    return records


def _numbers(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with the strings that spell a NaN or infinity back as those floats."""
    return {key: _NON_FINITE.get(value, value) if isinstance(value, str) else value for key, value in record.items()}


def read_loss_log(run_dir: Path, steps: list[int]) -> list[dict[str, Any]]:
    """The per-update loss records of a run, from the loss stretches of checkpoints `steps`."""
    records = []
    for step in steps:
        records.extend(read_loss_stretch(run_dir / "checkpoints" / checkpoint_dir_name(step) / "loss.jsonl"))
    return records


def read_evaluations(run_dir: Path, steps: list[int]) -> list[dict[str, Any]]:
    """The eval.json records of checkpoints `steps` that have one (runs without a held-out split have none);
    a loss that diverged is written as loss.jsonl's strict-json writes it, and read back as its float."""
    records = []
    for step in steps:
        path = run_dir / "checkpoints" / checkpoint_dir_name(step) / EVAL_NAME
        if path.is_file():
            record = read_json(path)
            if not isinstance(record, dict):
                raise UnsafeJSONError(f"{path}: an evaluation record is a JSON object, got {type(record).__name__}")
            records.append(_numbers(record))
    return records


def read(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> LoopState:
    """Load checkpoint `step` into `model` and `optimizer` (whose moments must exist) in place.

    Each safetensors header must list exactly the model's parameters (and their moments) with
    their dtypes and shapes (TensorFileError otherwise, before a tensor is loaded). The caller
    checks the files' bytes against the manifest first (resume: training/resume.py; replay and
    load: the Hub's verified fetch).
    """
    folder = run_dir / "checkpoints" / checkpoint_dir_name(step)
    source = str(folder)
    params = dict(model.named_parameters())
    moments_like = {f"{name}.{key}": optimizer.state[param][key] for name, param in params.items()
                    for key in _MOMENTS}
    try:
        weights = read_tensors(folder / "model.safetensors", params, f"{source}/model.safetensors")
        moments = read_tensors(folder / "optimizer.safetensors", moments_like, f"{source}/optimizer.safetensors")
        loop = LoopState.from_dict(read_json(folder / "state.json"), source=source)
    except (OSError, ManifestError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source} cannot be read: {e}") from e
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name])
            state = optimizer.state[param]
            for key in _MOMENTS:
                state[key].copy_(moments[f"{name}.{key}"])
    return loop
